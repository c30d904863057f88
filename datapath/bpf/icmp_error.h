// ICMP errors about translated flows, spliced into masq.h after its maps.
//
//   ingress (masq_reverse): an error from the outside about a packet the node sent; the
//     quoted packet is the node-side one (source node IP and NAT port): the pod's address
//     goes into the outer destination, the quoted source and its port (echo id).
//   egress (to_netdev): a pod's error about a packet it received through the NAT (say
//     port unreachable for a closed UDP socket); the quoted packet is the pod-side one
//     (destination the pod and its port): the node IP and NAT port go into the outer
//     source, the quoted destination and its port.
//
// The outer IP, quoted IP and ICMP checksums follow; the quoted L4 checksum is not
// updated (receivers match errors on addresses and ports and never verify it).

#define INNER_DADDR_OFF (INNER_OFF + 16)

// `local`: the address the quoted packet must carry on our side (the node IP on ingress,
// the erring pod on egress). Returns 0 with *translated set to the new outer address, -1
// when the error is about no translated flow, -2 when a helper failed.
static __always_inline int icmp_error_nat(struct __sk_buff *skb, int egress, u32 local,
                                          u32 *translated)
{
    struct iphdr inner;
    u16 ports[2];
    if (bpf_skb_load_bytes(skb, INNER_OFF, &inner, sizeof(inner)) < 0 || inner.ihl != 5 ||
        (egress ? inner.daddr : inner.saddr) != local)
        return -1;
    if (bpf_skb_load_bytes(skb, INNER_L4_OFF, ports, sizeof(ports)) < 0)
        return -1;
    struct nat_key key = {.addr_a = local, .addr_b = egress ? inner.saddr : inner.daddr,
                          .proto = inner.protocol};
    int port_off;
    if (inner.protocol == IPPROTO_TCP_ || inner.protocol == IPPROTO_UDP_) {
        key.port_a = egress ? ports[1] : ports[0];
        key.port_b = egress ? ports[0] : ports[1];
        port_off = INNER_L4_OFF + (egress ? 2 : 0);
    } else if (inner.protocol == IPPROTO_ICMP_ && !egress) {
        u16 id;
        if ((ports[0] & bpf_htons(0xFF00)) != bpf_htons(ICMP_ECHO_ << 8) ||
            bpf_skb_load_bytes(skb, INNER_L4_OFF + 4, &id, 2) < 0)
            return -1;
        key.port_a = id;
        port_off = INNER_L4_OFF + 4;
    } else {
        return -1;
    }
    struct nat_value *v = egress ? nat_out.lookup(&key) : nat_in.lookup(&key);
    if (!v)
        return -1;
    u32 new_addr = v->addr;
    u16 new_port = v->port;
    u16 old_port = key.port_a;
    u16 old_check = inner.check, new_check;
    int inner_addr_off = egress ? INNER_DADDR_OFF : INNER_SADDR_OFF;
    // Quoted IP header: our side's address and its checksum; the quoted port.
    if (bpf_l3_csum_replace(skb, INNER_CSUM_OFF, local, new_addr, 4) < 0 ||
        bpf_skb_store_bytes(skb, inner_addr_off, &new_addr, 4, 0) < 0 ||
        bpf_skb_load_bytes(skb, INNER_CSUM_OFF, &new_check, 2) < 0 ||
        bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
        return -2;
    // The ICMP checksum covers all three changed quoted fields.
    if (bpf_l4_csum_replace(skb, ICMP_CSUM_OFF, local, new_addr, 4) < 0 ||
        bpf_l4_csum_replace(skb, ICMP_CSUM_OFF, old_check, new_check, 2) < 0 ||
        bpf_l4_csum_replace(skb, ICMP_CSUM_OFF, old_port, new_port, 2) < 0)
        return -2;
    // The outer address on our side.
    int outer_off = egress ? SADDR_OFF : DADDR_OFF;
    if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, local, new_addr, 4) < 0 ||
        bpf_skb_store_bytes(skb, outer_off, &new_addr, 4, 0) < 0)
        return -2;
    *translated = new_addr;
    return 0;
}
