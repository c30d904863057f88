// ICMP time exceeded from the node for a packet to or from a pod whose TTL expires here,
// spliced into forward.c before dec_ttl(). With ip_forward=0 the kernel stack would drop
// such a packet silently, so a traceroute would miss the node's hop; like a router (and
// like Calico's nodes, whose kernel answers from the node address) the node answers.
//
// The packet is rewritten in place into the reply: an IPv4 header from NODE_IP (the
// node's address, a -D flag; 0 leaves the packet to the stack) to the sender, ICMP type
// 11 code 0 quoting the original IP header and its first 8 bytes (RFC 792), the frame cut
// to that length. A pod behind the veth the packet came in on gets it straight back
// (Ethernet addresses swapped); any other sender (a pod on another node, whose packet
// expires on its way into a local pod) along kroute's route to it, as from_pod forwards.
// Never for an ICMP error (RFC 1122 3.2.2), a non-first fragment, IP options, or a sender
// no route leads to. Rate-limited as the kernel limits its own (icmp_ratelimit,
// icmp_ratemask, icmp_msgs_per_sec, icmp_msgs_burst, read from the node's sysctls at load
// into the TE_* flags): per sender a burst of 6 then one per interval, and all senders
// together msgs_per_sec with a burst (per CPU here); a packet over the limit is dropped
// and counted, as the kernel drops it.

#ifndef NODE_IP
#define NODE_IP 0
#endif

#ifndef TE_PEER_INTERVAL_NS
#define TE_PEER_INTERVAL_NS 1000000000ull  // net.ipv4.icmp_ratelimit (ms) in ns; 0: off
#endif
#ifndef TE_GLOBAL_COST_NS
#define TE_GLOBAL_COST_NS 1000000ull  // 1 s / net.ipv4.icmp_msgs_per_sec; 0: off
#endif
#ifndef TE_GLOBAL_BURST
#define TE_GLOBAL_BURST 50ull  // net.ipv4.icmp_msgs_burst
#endif
#define TE_PEER_BURST 6ull  // the kernel's XRLIM_BURST_FACTOR
#define TE_PEERS 4096       // senders remembered (least recently used ones forgotten)

#define TE_PROTO_ICMP 1
#define TE_QUOTE 28  // the original IPv4 header (no options) and 8 bytes of its payload
#define TE_LEN (ETH_HLEN + 20 + 8 + TE_QUOTE)

struct te_reply {
    struct iphdr ip;
    u8 type;
    u8 code;
    __be16 check;
    u32 unused;
    u8 quote[TE_QUOTE];
} __attribute__((packed));

// Credit in nanoseconds, as the kernel's xrlim_allow keeps it in jiffies: it grows with
// time up to `burst` sends and each send spends `cost`. A zeroed bucket starts full.
struct te_bucket {
    u64 last_ns;
    u64 credit_ns;
};

BPF_TABLE("lru_hash", u32, struct te_bucket, te_peers, TE_PEERS);
BPF_PERCPU_ARRAY(te_global, struct te_bucket, 1);

static __always_inline int te_take(struct te_bucket *b, u64 now, u64 cost, u64 burst)
{
    u64 credit = b->credit_ns + (now - b->last_ns);
    if (credit > burst * cost)
        credit = burst * cost;
    b->last_ns = now;
    if (credit < cost) {
        b->credit_ns = credit;
        return 0;
    }
    b->credit_ns = credit - cost;
    return 1;
}

// 1 when a time exceeded to `sender` is within the limits (and spends from them).
static __always_inline int te_allowed(u32 sender)
{
    u64 now = bpf_ktime_get_ns();
    if (TE_PEER_INTERVAL_NS) {
        struct te_bucket *peer = te_peers.lookup(&sender);
        if (peer) {
            if (!te_take(peer, now, TE_PEER_INTERVAL_NS, TE_PEER_BURST))
                return 0;
        } else {
            struct te_bucket fresh = {};
            te_take(&fresh, now, TE_PEER_INTERVAL_NS, TE_PEER_BURST);
            te_peers.update(&sender, &fresh);
        }
    }
    if (TE_GLOBAL_COST_NS) {
        u32 zero = 0;
        struct te_bucket *all = te_global.lookup(&zero);
        if (!all || !te_take(all, now, TE_GLOBAL_COST_NS, TE_GLOBAL_BURST))
            return 0;
    }
    return 1;
}

static __always_inline __sum16 csum_fold32(__wsum sum)
{
    u32 s = (u32)sum;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__sum16)~s;
}

// Returns 1 with *verdict set when the reply is on its way (or the packet was dropped on
// a helper failure), 0 to leave the packet to the stack.
static __always_inline int ttl_expired(struct __sk_buff *skb, int *verdict)
{
    if (NODE_IP == 0)
        return 0;
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->ihl != 5 ||
        (ip->frag_off & bpf_htons(0x1FFF)) != 0)
        return 0;
    if (ip->protocol == TE_PROTO_ICMP) {
        u8 *type = (void *)(ip + 1);
        if ((void *)(type + 1) > data_end)
            return 0;
        if (*type != 8 && *type != 13 && *type != 15 && *type != 17)  // queries only
            return 0;
    }
    u32 sender = ip->saddr;
    u32 out_ifindex = 0, nexthop = 0;
    struct local_pod *ep = local_pods.lookup(&sender);
    int to_pod = ep && ep->ifindex == skb->ingress_ifindex;
    if (!to_pod) {  // from the underlay: back along kroute's route to the sender
        struct lpm_v4_key key = {.prefixlen = 32, .addr = sender};
        struct remote_route *rt = remote_routes.lookup(&key);
        if (!rt)
            return 0;
        out_ifindex = rt->ifindex;
        nexthop = rt->nexthop;
    }
    if (!te_allowed(sender)) {
        *verdict = count(CNT_TTL_EXCEEDED_LIMITED, TC_ACT_SHOT);
        return 1;
    }
    struct te_reply reply = {};
    if (bpf_skb_load_bytes(skb, ETH_HLEN, reply.quote, TE_QUOTE) < 0)
        return 0;  // shorter than a header and 8 bytes: nothing to quote properly
    u8 pod_mac[ETH_ALEN], host_mac[ETH_ALEN];
    __builtin_memcpy(pod_mac, eth->h_source, ETH_ALEN);
    __builtin_memcpy(host_mac, eth->h_dest, ETH_ALEN);

    reply.ip.version = 4;
    reply.ip.ihl = 5;
    reply.ip.tos = 0xc0;  // internetwork control, as Linux sends its ICMP errors
    reply.ip.tot_len = bpf_htons(TE_LEN - ETH_HLEN);
    reply.ip.ttl = 64;
    reply.ip.protocol = TE_PROTO_ICMP;
    reply.ip.saddr = NODE_IP;
    reply.ip.daddr = sender;
    reply.ip.check = csum_fold32(bpf_csum_diff(NULL, 0, (__be32 *)&reply.ip, 20, 0));
    reply.type = 11;  // time exceeded
    reply.code = 0;   // in transit
    reply.check = csum_fold32(bpf_csum_diff(NULL, 0, (__be32 *)&reply.type, 8 + TE_QUOTE, 0));

    if (bpf_skb_change_tail(skb, TE_LEN, 0) < 0 ||
        bpf_skb_store_bytes(skb, ETH_HLEN, &reply, sizeof(reply), 0) < 0 ||
        bpf_skb_store_bytes(skb, 0, pod_mac, ETH_ALEN, 0) < 0 ||
        bpf_skb_store_bytes(skb, ETH_ALEN, host_mac, ETH_ALEN, 0) < 0) {
        *verdict = count(CNT_DROP_CSUM, TC_ACT_SHOT);
        return 1;
    }
    long ret;
    if (to_pod) {
        ret = bpf_redirect(skb->ingress_ifindex, 0);
    } else if (nexthop) {
        struct bpf_redir_neigh nh = {};  // all 20 bytes written: unprivileged verifier rules
        nh.nh_family = AF_INET;
        nh.ipv4_nh = nexthop;
        ret = kr_redirect_neigh(out_ifindex, &nh, sizeof(nh), 0);
    } else {
        ret = kr_redirect_neigh(out_ifindex, NULL, 0, 0);
    }
    if (ret != TC_ACT_REDIRECT)
        *verdict = count(CNT_DROP_REDIRECT, TC_ACT_SHOT);
    else
        *verdict = count(CNT_TTL_EXCEEDED_SENT, TC_ACT_REDIRECT);
    return 1;
}
