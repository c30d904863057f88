// kroute masquerade (SNAT) for pod traffic leaving the cluster, included by forward.c so
// that one program per tc hook does forwarding and NAT (tc runs kroute's filters one per
// hook; reverse translation must happen before the local-pod delivery on the same hook).
//
//   to_netdev    egress of every egress interface: pod source, destination outside every
//                masq_skip prefix (the native routing CIDR) -> source becomes the node IP
//                and a port (ICMP echo id) from [port_min, port_max]
//   from_netdev  (forward.c) calls masq_reverse() first: replies and ICMP errors about
//                translated flows get their pod address back and go straight into the pod
//   from_pod     (forward.c) calls masq_redirect(): with forwarding off the stack would
//                drop a pod's packet to the outside, so it is sent to the egress device
//
// The NAT table is two pinned hashes (nat_out: pod side key, nat_in: node side key), each
// entry stamped with bpf_ktime_get_ns() on every packet; datapath/masq_bpf.py sweeps idle
// entries. A full table fails the insert: counted (CNT_NAT_FULL) and the new flow's
// packet dropped, while flows that have entries keep working.
//
// ICMP errors are translated both ways (icmp_error.h). Only IPv4 without options (ihl 5)
// is translated, outer and inner; fragments are dropped
// and counted (pods set DF). Inner L4 checksums of ICMP errors are not updated: receivers
// match the error on addresses and ports and never verify them.

#ifndef MAX_NAT_ENTRIES
#define MAX_NAT_ENTRIES 65536
#endif
#define MAX_MASQ_PREFIXES 256
#define MAX_EGRESS 64
#define NAT_PORT_TRIES 32

#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define ICMP_ECHOREPLY_ 0
#define ICMP_DEST_UNREACH_ 3
#define ICMP_ECHO_ 8
#define ICMP_TIME_EXCEEDED_ 11
#define ICMP_PARAMETERPROB_ 12

#define NAT_F_CLOSING 1  // a FIN or RST was seen: the sweep uses the short TCP timeout

struct masq_config {
    u32 enabled;
    u32 redirect_ifindex;  // where from_pod sends pod traffic to the outside
    u16 port_min;          // host byte order
    u16 port_max;
    u32 pad;
};

// nat_out: a = pod IP, port_a = pod port (echo id). nat_in: a = node IP, port_a = NAT port.
// b / port_b: the remote end (port_b 0 for ICMP). Ports in network byte order.
struct nat_key {
    u32 addr_a;
    u32 addr_b;
    u16 port_a;
    u16 port_b;
    u8 proto;
    u8 pad[3];
};

// nat_out: addr/port = node IP and NAT port. nat_in: addr/port = pod IP and pod port.
struct nat_value {
    u64 last_seen;  // bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the last packet
    u32 addr;
    u16 port;
    u8 flags;
    u8 pad;
};

BPF_TABLE_PINNED("array", u32, struct masq_config, masq_config, 1, PIN_DIR "/masq_config");
BPF_TABLE_PINNED("hash", u32, u32, masq_egress, MAX_EGRESS, PIN_DIR "/masq_egress");
BPF_TABLE_PINNED("lpm_trie", struct lpm_v4_key, u32, masq_sources, MAX_MASQ_PREFIXES,
                 PIN_DIR "/masq_sources", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct lpm_v4_key, u32, masq_skip, MAX_MASQ_PREFIXES,
                 PIN_DIR "/masq_skip", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct nat_key, struct nat_value, nat_out, MAX_NAT_ENTRIES,
                 PIN_DIR "/nat_out");
BPF_TABLE_PINNED("hash", struct nat_key, struct nat_value, nat_in, MAX_NAT_ENTRIES,
                 PIN_DIR "/nat_in");

#define L3_OFF ETH_HLEN
#define SADDR_OFF (L3_OFF + 12)
#define DADDR_OFF (L3_OFF + 16)
#define L4_OFF (L3_OFF + 20)
#define ICMP_CSUM_OFF (L4_OFF + 2)
#define ICMP_ID_OFF (L4_OFF + 4)
#define INNER_OFF (L4_OFF + 8)
#define INNER_CSUM_OFF (INNER_OFF + 10)
#define INNER_SADDR_OFF (INNER_OFF + 12)
#define INNER_L4_OFF (INNER_OFF + 20)

static __always_inline struct masq_config *masq_enabled(void)
{
    u32 zero = 0;
    struct masq_config *cfg = masq_config.lookup(&zero);
    if (!cfg || !cfg->enabled)
        return NULL;
    return cfg;
}

// A pod source to a destination outside every masq_skip prefix.
static __always_inline int masq_wanted(u32 saddr, u32 daddr)
{
    struct lpm_v4_key k = {.prefixlen = 32, .addr = saddr};
    if (!masq_sources.lookup(&k))
        return 0;
    k.addr = daddr;
    return masq_skip.lookup(&k) == NULL;
}

static __always_inline int is_fragment(struct iphdr *ip)
{
    return (ip->frag_off & bpf_htons(0x3FFF)) != 0;  // MF set or a fragment offset
}

static __always_inline int l4_csum_off(u8 proto)
{
    return L4_OFF + (proto == IPPROTO_TCP_ ? 16 : proto == IPPROTO_UDP_ ? 6 : 2);
}

// Rewrite the address at addr_off and the port (echo id) at port_off of the outer packet,
// with its IP and L4 checksums. Returns 0, or -1 when a helper refused.
static __always_inline int rewrite(struct __sk_buff *skb, u8 proto, int addr_off, u32 old_addr,
                                   u32 new_addr, int port_off, u16 old_port, u16 new_port)
{
    int csum = l4_csum_off(proto);
    u64 mangled = proto == IPPROTO_UDP_ ? BPF_F_MARK_MANGLED_0 : 0;
    if (proto != IPPROTO_ICMP_ &&  // the ICMP checksum has no pseudo header
        bpf_l4_csum_replace(skb, csum, old_addr, new_addr, BPF_F_PSEUDO_HDR | mangled | 4) < 0)
        return -1;
    if (bpf_l4_csum_replace(skb, csum, old_port, new_port, mangled | 2) < 0)
        return -1;
    if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
        return -1;
    if (bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0) < 0)
        return -1;
    if (bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
        return -1;
    return 0;
}

// The (port, remote port, port offset) of a translatable packet, seen from the pod side
// (egress: source port) or the node side (ingress: destination port). 0 if it is one.
static __always_inline int l4_ports(void *data, void *data_end, struct iphdr *ip, int egress,
                                    u16 *port, u16 *remote, int *port_off)
{
    u16 *l4 = (void *)(ip + 1);
    if ((void *)(l4 + 4) > data_end)
        return -1;
    if (ip->protocol == IPPROTO_TCP_ || ip->protocol == IPPROTO_UDP_) {
        *port = egress ? l4[0] : l4[1];
        *remote = egress ? l4[1] : l4[0];
        *port_off = L4_OFF + (egress ? 0 : 2);
        return 0;
    }
    if (ip->protocol == IPPROTO_ICMP_) {
        u8 type = *(u8 *)l4;
        if (type != (egress ? ICMP_ECHO_ : ICMP_ECHOREPLY_))
            return -1;
        *port = l4[2];
        *remote = 0;
        *port_off = ICMP_ID_OFF;
        return 0;
    }
    return -1;
}

static __always_inline void touch(struct nat_value *v, struct iphdr *ip, void *data_end)
{
    v->last_seen = bpf_ktime_get_ns();
    if (ip->protocol == IPPROTO_TCP_) {
        u8 *flags = (u8 *)(ip + 1) + 13;
        if ((void *)(flags + 1) <= data_end && (*flags & 0x05))  // FIN or RST
            v->flags |= NAT_F_CLOSING;
    }
}

// Find or create the NAT entry of a pod's flow. NULL: counted and to be dropped.
static __always_inline struct nat_value *nat_lookup_or_create(struct masq_config *cfg,
                                                              struct nat_key *out_key,
                                                              u32 node_ip)
{
    struct nat_value *v = nat_out.lookup(out_key);
    if (v)
        return v;
    u64 now = bpf_ktime_get_ns();
    struct nat_key in_key = {.addr_a = node_ip, .addr_b = out_key->addr_b,
                             .port_b = out_key->port_b, .proto = out_key->proto};
    struct nat_value in_val = {.last_seen = now, .addr = out_key->addr_a,
                               .port = out_key->port_a};
    u32 span = (u32)cfg->port_max - cfg->port_min + 1;
    if (cfg->port_max < cfg->port_min)
        return NULL;
    u32 start = bpf_get_prandom_u32() % span;
    int ret = -1;
    for (int i = 0; i < NAT_PORT_TRIES; i++) {
        u16 port = cfg->port_min + (start + i) % span;
        in_key.port_a = bpf_htons(port);
        ret = nat_in.insert(&in_key, &in_val);
        if (ret != -EEXIST)
            break;
    }
    if (ret == -E2BIG || ret == -ENOMEM) {
        count(CNT_NAT_FULL, 0);
        return NULL;
    }
    if (ret) {
        count(CNT_NAT_NO_PORT, 0);
        return NULL;
    }
    struct nat_value out_val = {.last_seen = now, .addr = node_ip, .port = in_key.port_a};
    ret = nat_out.insert(out_key, &out_val);
    if (ret) {
        nat_in.delete(&in_key);
        if (ret != -EEXIST) {
            count(CNT_NAT_FULL, 0);
            return NULL;
        }
        // Another CPU created the flow first: use its entry.
    }
    v = nat_out.lookup(out_key);
    if (!v)
        count(CNT_NAT_FULL, 0);
    return v;
}

#include "icmp_error.h"

int to_netdev(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return TC_ACT_OK;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return TC_ACT_OK;
    struct masq_config *cfg = masq_enabled();
    if (!cfg || !masq_wanted(ip->saddr, ip->daddr))
        return TC_ACT_OK;
    u32 ifindex = skb->ifindex;
    u32 *node = masq_egress.lookup(&ifindex);
    if (!node)
        return TC_ACT_OK;
    u32 node_ip = *node;
    if (ip->ihl != 5)
        return count(CNT_MASQ_DROP_OPTIONS, TC_ACT_SHOT);
    if (is_fragment(ip))
        return count(CNT_MASQ_DROP_FRAG, TC_ACT_SHOT);
    u16 port, remote;
    int port_off;
    if (l4_ports(data, data_end, ip, 1, &port, &remote, &port_off)) {
        u32 pod = ip->saddr, translated;  // a pod's ICMP error about a translated flow?
        int ret = ip->protocol == IPPROTO_ICMP_ ? icmp_error_nat(skb, 1, pod, &translated) : -1;
        if (ret == 0)
            return count(CNT_MASQUERADED, TC_ACT_OK);
        return count(ret == -1 ? CNT_MASQ_DROP_PROTO : CNT_DROP_CSUM, TC_ACT_SHOT);
    }
    struct nat_key key = {.addr_a = ip->saddr, .addr_b = ip->daddr, .port_a = port,
                          .port_b = remote, .proto = ip->protocol};
    u32 saddr = ip->saddr;
    u8 proto = ip->protocol;
    struct nat_value *v = nat_lookup_or_create(cfg, &key, node_ip);
    if (!v)
        return TC_ACT_SHOT;
    touch(v, ip, data_end);
    u16 nat_port = v->port;
    u32 nat_addr = v->addr;
    if (rewrite(skb, proto, SADDR_OFF, saddr, nat_addr, port_off, port, nat_port))
        return count(CNT_DROP_CSUM, TC_ACT_SHOT);
    return count(CNT_MASQUERADED, TC_ACT_OK);
}

// Reverse translation on an egress interface's ingress. Returns 1 and sets *pod_ip when
// the packet now belongs to a pod, 0 when it is none of masquerade's business, or -1 with
// *verdict set when it must be dropped.
static __always_inline int masq_reverse(struct __sk_buff *skb, u32 *pod_ip, int *verdict)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct iphdr *ip = data + ETH_HLEN;
    if ((void *)(ip + 1) > data_end || ip->ihl != 5 || is_fragment(ip))
        return 0;
    if (!masq_enabled())
        return 0;
    u32 ifindex = skb->ifindex;
    u32 *node = masq_egress.lookup(&ifindex);
    if (!node || *node != ip->daddr)
        return 0;
    u32 node_ip = *node;
    if (ip->protocol == IPPROTO_ICMP_) {
        u8 *type = (void *)(ip + 1);
        if ((void *)(type + 1) > data_end)
            return 0;
        if (*type == ICMP_DEST_UNREACH_ || *type == ICMP_TIME_EXCEEDED_ ||
            *type == ICMP_PARAMETERPROB_) {
            int ret = icmp_error_nat(skb, 0, node_ip, pod_ip);
            if (ret == -1)
                return 0;
            if (ret < 0) {
                *verdict = count(CNT_DROP_CSUM, TC_ACT_SHOT);
                return -1;
            }
            count(CNT_MASQ_REVERSED, 0);
            return 1;
        }
    }
    u16 port, remote;
    int port_off;
    if (l4_ports(data, data_end, ip, 0, &port, &remote, &port_off))
        return 0;
    struct nat_key key = {.addr_a = node_ip, .addr_b = ip->saddr, .port_a = port,
                          .port_b = remote, .proto = ip->protocol};
    struct nat_value *v = nat_in.lookup(&key);
    if (!v)
        return 0;
    touch(v, ip, data_end);
    u32 new_addr = v->addr;
    u16 new_port = v->port;
    if (rewrite(skb, key.proto, DADDR_OFF, node_ip, new_addr, port_off, port, new_port)) {
        *verdict = count(CNT_DROP_CSUM, TC_ACT_SHOT);
        return -1;
    }
    *pod_ip = new_addr;
    count(CNT_MASQ_REVERSED, 0);
    return 1;
}

// from_pod, after local pods and remote routes missed: a packet to be masqueraded goes
// out of the egress device (whose to_netdev translates it), TTL decremented as a router.
// Returns 1 with *verdict set when handled.
static __always_inline int masq_redirect(struct __sk_buff *skb, struct iphdr *ip, int *verdict)
{
    struct masq_config *cfg = masq_enabled();
    if (!cfg || !cfg->redirect_ifindex || !masq_wanted(ip->saddr, ip->daddr))
        return 0;
    u32 ifindex = cfg->redirect_ifindex;
    u32 *node = masq_egress.lookup(&ifindex);
    if (!node || *node == ip->daddr)  // to the node itself: the stack's
        return 0;
    if (dec_ttl(skb, ip, verdict))
        return 1;
    if (kr_redirect_neigh(ifindex, NULL, 0, 0) != TC_ACT_REDIRECT)
        *verdict = count(CNT_DROP_REDIRECT, TC_ACT_SHOT);
    else
        *verdict = count(CNT_MASQ_REDIRECTED, TC_ACT_REDIRECT);
    return 1;
}
