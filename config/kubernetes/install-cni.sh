#!/bin/sh
# The DaemonSet's init step: kroute (a Python venv) to the host's /opt/kroute, a
# kroute-cni shim to /opt/cni/bin, and, with KROUTE_INSTALL_CNI_CONFIG=true, the
# conflist to /etc/cni/net.d. Idempotent; files are replaced atomically.
set -eu
cp -a /opt/kroute/venv /host/opt/kroute/venv.new
rm -rf /host/opt/kroute/venv
mv /host/opt/kroute/venv.new /host/opt/kroute/venv
cat > /host/opt/cni/bin/kroute-cni.new <<'SHIM'
#!/bin/sh
exec /opt/kroute/venv/bin/kroute-cni "$@"
SHIM
chmod 0755 /host/opt/cni/bin/kroute-cni.new
mv /host/opt/cni/bin/kroute-cni.new /host/opt/cni/bin/kroute-cni
if [ "${KROUTE_INSTALL_CNI_CONFIG:-false}" = "true" ]; then
  cp /opt/kroute/10-kroute.conflist /host/etc/cni/net.d/10-kroute.conflist.new
  mv /host/etc/cni/net.d/10-kroute.conflist.new /host/etc/cni/net.d/10-kroute.conflist
fi
echo "kroute-cni installed"
