// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// meshguard's TC programs for the mesh interface: `ingress` and `egress`
// decide each IP packet with a bounded number of map lookups, whatever the
// number of rules:
//
//   1. flows (LRU hash): a packet of a flow an earlier packet was allowed
//      for passes (replies included: the key is the flow seen from this
//      node, local and remote, so both directions share it);
//   2. classes_v4 / classes_v6 (LPM trie): the remote address -> its class,
//      the addresses every rule treats alike (backend::ebpf::classes);
//      locals_v4 / locals_v6 the same for the local address;
//   3. verdicts (LPM trie): (direction, remote class, local class,
//      protocol, port) -> the first deciding rule's verdict
//      (backend::ebpf::verdicts): port ranges are written as port prefixes,
//      every port of a protocol a rule names has an entry, and one 72-bit
//      entry answers the protocols no rule names, so the longest match is
//      always the first-match answer, resolved when the agent writes the
//      map, not per packet.
//
// No class, or no verdict: dropped (default deny). Headers are read
// relative to the network header, so the object works on the boringtun TUN
// device (no link-layer header) and on veth or kernel WireGuard alike.
// Non-first fragments carry no ports and are dropped. IPv6 extension
// headers before the transport header are not walked, so a packet with one
// is dropped (taking it for a protocol without ports would let an
// all-traffic Allow pass a TCP packet an earlier port Deny is for).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define DIRECTION_INGRESS 0
#define DIRECTION_EGRESS 1

#define VERDICT_ALLOW 1

struct v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

// Data bits in order: direction (8), remote class (32, big-endian), local
// class (32, big-endian), protocol (8), the service's port (16, big-endian).
// The protocols no rule names: a 72-bit prefix; every port of one protocol:
// 80 bits; one port: 96.
struct verdict_key {
	__u32 prefixlen;
	__u8 direction;
	__u8 remote[4];
	__u8 local[4];
	__u8 protocol;
	__u8 port[2];
};

// A flow seen from this node.
struct flow_key {
	__u8 local[16];
	__u8 remote[16];
	__u16 local_port;
	__u16 remote_port;
	__u8 protocol;
	__u8 family;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v4_key);
	__type(value, __u32);
} classes_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_key);
	__type(value, __u32);
} classes_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v4_key);
	__type(value, __u32);
} locals_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_key);
	__type(value, __u32);
} locals_v6 SEC(".maps");

// Value: the verdict in the low byte, the rule's index above it.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct verdict_key);
	__type(value, __u32);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, __u8);
} flows SEC(".maps");

struct packet {
	struct flow_key flow;
	__u32 remote_class;
	__u32 local_class;
};

// Reads the packet's addresses, protocol and ports into `p`, from this
// node's side; returns 0, or -1 for a packet that cannot be decided.
static __always_inline int parse(struct __sk_buff *skb, __u8 direction, struct packet *p)
{
	__u32 l4 = 0;
	__u8 protocol = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		struct v4_key key = {.prefixlen = 32};
		__u32 *class_id;
		__u32 *local_class;

		if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof(ip), BPF_HDR_START_NET))
			return -1;
		if (ip.version != 4 || ip.ihl < 5)
			return -1;
		if (ip.frag_off & bpf_htons(0x1fff))
			return -1;
		__builtin_memcpy(key.addr, direction == DIRECTION_INGRESS ? (void *)&ip.saddr : (void *)&ip.daddr, 4);
		__builtin_memcpy(p->flow.remote, key.addr, 4);
		__builtin_memcpy(p->flow.local, direction == DIRECTION_INGRESS ? (void *)&ip.daddr : (void *)&ip.saddr, 4);
		p->flow.family = 4;
		class_id = bpf_map_lookup_elem(&classes_v4, &key);
		if (!class_id)
			return -1;
		p->remote_class = *class_id;
		__builtin_memcpy(key.addr, p->flow.local, 4);
		local_class = bpf_map_lookup_elem(&locals_v4, &key);
		if (!local_class)
			return -1;
		p->local_class = *local_class;
		protocol = ip.protocol;
		l4 = ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		struct v6_key key = {.prefixlen = 128};
		__u32 *class_id;
		__u32 *local_class;

		if (bpf_skb_load_bytes_relative(skb, 0, &ip6, sizeof(ip6), BPF_HDR_START_NET))
			return -1;
		__builtin_memcpy(key.addr, direction == DIRECTION_INGRESS ? (void *)&ip6.saddr : (void *)&ip6.daddr, 16);
		__builtin_memcpy(p->flow.remote, key.addr, 16);
		__builtin_memcpy(p->flow.local, direction == DIRECTION_INGRESS ? (void *)&ip6.daddr : (void *)&ip6.saddr, 16);
		p->flow.family = 6;
		class_id = bpf_map_lookup_elem(&classes_v6, &key);
		if (!class_id)
			return -1;
		p->remote_class = *class_id;
		__builtin_memcpy(key.addr, p->flow.local, 16);
		local_class = bpf_map_lookup_elem(&locals_v6, &key);
		if (!local_class)
			return -1;
		p->local_class = *local_class;
		protocol = ip6.nexthdr;
		switch (protocol) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_FRAGMENT:
		case IPPROTO_DSTOPTS:
		case IPPROTO_MH:
		case 139: // HIP
		case 140: // Shim6
		case 253: // experimentation (RFC 3692)
		case 254:
			return -1;
		}
		l4 = sizeof(ip6);
	} else {
		return -1;
	}

	p->flow.protocol = protocol;
	if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP) {
		__u16 ports[2];

		if (bpf_skb_load_bytes_relative(skb, l4, ports, sizeof(ports), BPF_HDR_START_NET))
			return -1;
		// ports[0] is the source, ports[1] the destination.
		p->flow.local_port = direction == DIRECTION_INGRESS ? ports[1] : ports[0];
		p->flow.remote_port = direction == DIRECTION_INGRESS ? ports[0] : ports[1];
	}
	// Other protocols have no ports: they match the rules for all traffic.
	return 0;
}

static __always_inline int decide(struct __sk_buff *skb, __u8 direction)
{
	struct packet p = {};
	struct verdict_key key = {.prefixlen = 96};
	__u32 *verdict;
	__u8 seen = 1;
	__u16 port;

	// Not IP: nothing meshguard governs (ARP on a veth; a TUN carries none).
	if (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6))
		return TC_ACT_OK;
	if (parse(skb, direction, &p))
		return TC_ACT_SHOT;
	if (bpf_map_lookup_elem(&flows, &p.flow))
		return TC_ACT_OK;

	// The service's port: the local one for ingress, the remote one for egress.
	port = direction == DIRECTION_INGRESS ? p.flow.local_port : p.flow.remote_port;
	key.direction = direction;
	__builtin_memcpy(key.remote, &(__u32){bpf_htonl(p.remote_class)}, 4);
	__builtin_memcpy(key.local, &(__u32){bpf_htonl(p.local_class)}, 4);
	key.protocol = p.flow.protocol;
	__builtin_memcpy(key.port, &port, 2);
	verdict = bpf_map_lookup_elem(&verdicts, &key);
	if (!verdict || (*verdict & 0xff) != VERDICT_ALLOW)
		return TC_ACT_SHOT;
	bpf_map_update_elem(&flows, &p.flow, &seen, BPF_ANY);
	return TC_ACT_OK;
}

SEC("classifier")
int ingress(struct __sk_buff *skb)
{
	return decide(skb, DIRECTION_INGRESS);
}

SEC("classifier")
int egress(struct __sk_buff *skb)
{
	return decide(skb, DIRECTION_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
