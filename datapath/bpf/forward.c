// kroute forwarding datapath: tc (direct action) programs for native-routing pod networks,
// in the shape of Cilium's BPF host routing.
//
//   from_pod     ingress of the host side of every pod veth
//   from_netdev  ingress of the underlay device
//   to_netdev    egress of the masquerade egress devices (masq.h)
//
// from_pod answers the pod's ARP requests itself (the node's proxy ARP needs forwarding,
// which is off), then: destination is a local pod -> bpf_redirect_peer() into that pod's
// namespace; destination inside a remote pod CIDR -> bpf_redirect_neigh() out of the
// underlay device towards the route's next hop; anything else -> the kernel stack.
// from_netdev sends traffic for local pods straight into them, everything else to the
// stack. Forwarded packets get their TTL decremented and the IP checksum fixed, as a
// router would; a pod's packet whose TTL would expire is answered with ICMP time exceeded
// from the node (ttl_expired.h), any other goes to the stack.
//
// Compiled once per process by bcc (datapath/bpf_compile.py, which splices the local headers
// in place of their #include: bcc rewrites map calls only in the main source); PIN_DIR (and
// NODE_IP) are passed as -D flags
// and must be a string literal naming a directory on bpffs. Maps are pinned there, and a
// later compile reuses whatever is pinned (entries survive a restart of kroute).
//
// Map layouts are part of the contract with datapath/loader.py: change both together, and
// rename a map when its layout changes (the loader refuses a pinned map of another shape).

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/if_arp.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>
#include <linux/socket.h>
#include <uapi/asm-generic/errno-base.h>

#ifndef PIN_DIR
#error "PIN_DIR must be defined (-DPIN_DIR=\"/sys/fs/bpf/kroute\")"
#endif

#ifndef MAX_LOCAL_PODS
#define MAX_LOCAL_PODS 4096
#endif
#ifndef MAX_REMOTE_ROUTES
#define MAX_REMOTE_ROUTES 16384
#endif

// Counter slots; datapath/loader.py names them in the same order (COUNTER_NAMES).
enum {
    CNT_FWD_LOCAL = 0,      // redirected into a local pod
    CNT_FWD_REMOTE = 1,     // redirected to the underlay towards a remote node
    CNT_TO_STACK = 2,       // handed to the kernel stack (no entry, not IPv4, ...)
    CNT_TO_STACK_TTL = 3,   // would be forwarded, TTL expires, not a pod's: to the stack
    CNT_ARP_REPLY = 4,      // ARP requests from pods answered with the host veth's MAC
    CNT_DROP_MALFORMED = 5, // truncated IPv4 header or ihl < 5
    CNT_DROP_REDIRECT = 6,  // a redirect helper refused (bad ifindex or flags)
    CNT_DROP_CSUM = 7,      // a checksum or store helper failed
    CNT_MASQUERADED = 8,    // masq.h: pod source rewritten to the node IP on egress
    CNT_MASQ_REVERSED = 9,  // reply or ICMP error translated back to the pod
    CNT_MASQ_REDIRECTED = 10, // pod traffic to the outside sent to the egress device
    CNT_NAT_FULL = 11,      // NAT table full: a new flow's packet dropped
    CNT_NAT_NO_PORT = 12,   // no free NAT port towards that remote end: dropped
    CNT_MASQ_DROP_FRAG = 13,    // an IPv4 fragment from a pod to the outside
    CNT_MASQ_DROP_PROTO = 14,   // not TCP, UDP or ICMP echo, from a pod to the outside
    CNT_MASQ_DROP_OPTIONS = 15, // IPv4 options (ihl > 5) from a pod to the outside
    CNT_MASQ_DROP_NO_POD = 16,  // translated back to a pod that is not on this node
    CNT_TTL_EXCEEDED_SENT = 17, // a pod's TTL expired here: time exceeded sent back
    CNT_TTL_EXCEEDED_LIMITED = 18, // ... but over the ICMP rate limits: dropped
    CNT_MAX = 19,
};

struct local_pod {
    u32 ifindex;      // host-side veth of the pod (in the node's namespace)
    u32 flags;        // reserved, 0
    u8 host_mac[6];   // MAC of that host-side veth: source of frames into the pod, ARP answer
    u8 pod_mac[6];    // MAC of the pod's eth0, or all zero when unknown (then kept as is)
};

struct lpm_v4_key {
    u32 prefixlen;
    u32 addr;         // network byte order
};

struct remote_route {
    u32 ifindex;      // underlay device
    u32 nexthop;      // IPv4 next hop, network byte order; 0: let the kernel's FIB pick
};

BPF_TABLE_PINNED("hash", u32, struct local_pod, local_pods, MAX_LOCAL_PODS,
                 PIN_DIR "/local_pods");
BPF_TABLE_PINNED("lpm_trie", struct lpm_v4_key, struct remote_route, remote_routes,
                 MAX_REMOTE_ROUTES, PIN_DIR "/remote_routes", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("percpu_array", u32, u64, counters, CNT_MAX, PIN_DIR "/counters");

// bcc 0.26 declares bpf_redirect_neigh with three arguments; the kernel's has four.
static long (*const kr_redirect_neigh)(u32 ifindex, struct bpf_redir_neigh *params, int plen,
                                 u64 flags) = (void *)BPF_FUNC_redirect_neigh;

#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))
#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

struct arp_eth {
    __be16 htype;
    __be16 ptype;
    u8 hlen;
    u8 plen;
    __be16 op;
    u8 sha[ETH_ALEN];
    u8 spa[4];
    u8 tha[ETH_ALEN];
    u8 tpa[4];
} __attribute__((packed));

static __always_inline int count(u32 slot, int verdict)
{
    u64 *c = counters.lookup(&slot);
    if (c)
        *c += 1;
    return verdict;
}

static __always_inline int is_zero_mac(const u8 *m)
{
    return (m[0] | m[1] | m[2] | m[3] | m[4] | m[5]) == 0;
}

#include "ttl_expired.h"

// Decrement the TTL and fix the header checksum. Returns 0 on success, or the verdict to
// return (packet pointers are invalid afterwards either way).
static __always_inline int dec_ttl(struct __sk_buff *skb, struct iphdr *ip, int *verdict)
{
    u8 ttl = ip->ttl;
    if (ttl <= 1) {
        if (!ttl_expired(skb, verdict))
            *verdict = count(CNT_TO_STACK_TTL, TC_ACT_OK);
        return -1;
    }
    // TTL shares a 16-bit checksum word with the protocol byte.
    __be16 old = bpf_htons((u16)ttl << 8);
    __be16 new = bpf_htons((u16)(ttl - 1) << 8);
    ip->ttl = ttl - 1;
    if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old, new, 2) < 0) {
        *verdict = count(CNT_DROP_CSUM, TC_ACT_SHOT);
        return -1;
    }
    return 0;
}

// Into a local pod: TTL, MACs as the pod expects them, then straight into its namespace.
static __always_inline int to_local_pod(struct __sk_buff *skb, struct ethhdr *eth,
                                        struct iphdr *ip, struct local_pod *ep)
{
    int verdict;
    u32 ifindex = ep->ifindex;
    if (!is_zero_mac(ep->host_mac))
        __builtin_memcpy(eth->h_source, ep->host_mac, ETH_ALEN);
    if (!is_zero_mac(ep->pod_mac))
        __builtin_memcpy(eth->h_dest, ep->pod_mac, ETH_ALEN);
    if (dec_ttl(skb, ip, &verdict))
        return verdict;
    // Valid from a tc ingress hook towards a veth whose peer lives in another namespace:
    // the packet enters the pod without crossing the node's stack or the veth's xmit.
    long ret = bpf_redirect_peer(ifindex, 0);
    if (ret != TC_ACT_REDIRECT)
        return count(CNT_DROP_REDIRECT, TC_ACT_SHOT);
    return count(CNT_FWD_LOCAL, TC_ACT_REDIRECT);
}

static __always_inline int to_remote(struct __sk_buff *skb, struct iphdr *ip,
                                     struct remote_route *rt)
{
    int verdict;
    u32 ifindex = rt->ifindex;
    u32 nexthop = rt->nexthop;
    if (dec_ttl(skb, ip, &verdict))
        return verdict;
    long ret;
    if (nexthop) {
        struct bpf_redir_neigh nh = {};
        nh.nh_family = AF_INET;
        nh.ipv4_nh = nexthop;
        ret = kr_redirect_neigh(ifindex, &nh, sizeof(nh), 0);
    } else {
        ret = kr_redirect_neigh(ifindex, NULL, 0, 0);
    }
    if (ret != TC_ACT_REDIRECT)
        return count(CNT_DROP_REDIRECT, TC_ACT_SHOT);
    return count(CNT_FWD_REMOTE, TC_ACT_REDIRECT);
}

#include "masq.h"

// A pod's ARP request (for its gateway, 169.254.1.1, or anything else on-link): answer
// with the MAC of the host veth it arrived on, as Calico's proxy ARP does, but without
// needing forwarding on. Only for a sender the node knows as a pod behind this very veth.
static __always_inline int arp_reply(struct __sk_buff *skb, void *data, void *data_end)
{
    struct ethhdr *eth = data;
    struct arp_eth *arp = data + sizeof(*eth);
    if ((void *)(arp + 1) > data_end)
        return count(CNT_TO_STACK, TC_ACT_OK);
    if (arp->htype != bpf_htons(ARPHRD_ETHER) || arp->ptype != bpf_htons(ETH_P_IP) ||
        arp->hlen != ETH_ALEN || arp->plen != 4 || arp->op != bpf_htons(ARPOP_REQUEST))
        return count(CNT_TO_STACK, TC_ACT_OK);
    u32 spa, tpa;
    __builtin_memcpy(&spa, arp->spa, 4);
    __builtin_memcpy(&tpa, arp->tpa, 4);
    if (spa == 0 || spa == tpa)  // address probes and gratuitous ARP: not ours to answer
        return count(CNT_TO_STACK, TC_ACT_OK);
    struct local_pod *ep = local_pods.lookup(&spa);
    if (!ep || ep->ifindex != skb->ingress_ifindex || is_zero_mac(ep->host_mac))
        return count(CNT_TO_STACK, TC_ACT_OK);
    u8 mac[ETH_ALEN];
    __builtin_memcpy(mac, ep->host_mac, ETH_ALEN);

    __builtin_memcpy(eth->h_dest, arp->sha, ETH_ALEN);
    __builtin_memcpy(eth->h_source, mac, ETH_ALEN);
    arp->op = bpf_htons(ARPOP_REPLY);
    __builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
    __builtin_memcpy(arp->tpa, &spa, 4);
    __builtin_memcpy(arp->sha, mac, ETH_ALEN);
    __builtin_memcpy(arp->spa, &tpa, 4);
    // Back out of the veth it came in on, towards the pod.
    if (bpf_redirect(skb->ingress_ifindex, 0) != TC_ACT_REDIRECT)
        return count(CNT_DROP_REDIRECT, TC_ACT_SHOT);
    return count(CNT_ARP_REPLY, TC_ACT_REDIRECT);
}

int from_pod(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return count(CNT_TO_STACK, TC_ACT_OK);
    if (eth->h_proto == bpf_htons(ETH_P_ARP))
        return arp_reply(skb, data, data_end);
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return count(CNT_TO_STACK, TC_ACT_OK);
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->ihl < 5)
        return count(CNT_DROP_MALFORMED, TC_ACT_SHOT);

    u32 daddr = ip->daddr;
    struct local_pod *ep = local_pods.lookup(&daddr);
    if (ep)
        return to_local_pod(skb, eth, ip, ep);

    struct lpm_v4_key key = {.prefixlen = 32, .addr = daddr};
    struct remote_route *rt = remote_routes.lookup(&key);
    if (rt)
        return to_remote(skb, ip, rt);
    int verdict;
    if (masq_redirect(skb, ip, &verdict))
        return verdict;
    return count(CNT_TO_STACK, TC_ACT_OK);
}

int from_netdev(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return count(CNT_TO_STACK, TC_ACT_OK);
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return count(CNT_TO_STACK, TC_ACT_OK);
    struct iphdr *ip = (void *)(eth + 1);
    // Malformed packets on the underlay are the stack's business (it counts and drops them).
    if ((void *)(ip + 1) > data_end || ip->ihl < 5)
        return count(CNT_TO_STACK, TC_ACT_OK);
    u32 daddr = ip->daddr;
    int verdict;
    int reversed = masq_reverse(skb, &daddr, &verdict);
    if (reversed < 0)
        return verdict;
    if (reversed) {  // rewritten: packet pointers are stale
        data = (void *)(long)skb->data;
        data_end = (void *)(long)skb->data_end;
        eth = data;
        ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end)
            return count(CNT_DROP_MALFORMED, TC_ACT_SHOT);
    }
    struct local_pod *ep = local_pods.lookup(&daddr);
    if (ep)
        return to_local_pod(skb, eth, ip, ep);
    if (reversed)
        return count(CNT_MASQ_DROP_NO_POD, TC_ACT_SHOT);
    return count(CNT_TO_STACK, TC_ACT_OK);
}
