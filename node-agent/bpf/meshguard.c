// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// meshguard's TC programs for the mesh interface: `ingress` and `egress`
// decide each IP packet with a bounded number of map lookups, whatever the
// number of rules (at most eight: state, settings, flows, the flow an ICMP
// error quotes, two classes, the verdict and the counter; a packet of a
// known flow costs three):
//
//   1. state (array): which of the two generations of the tables is live.
//      The agent writes a revision into the other generation, then flips
//      this one word, so a packet sees one revision whole, never a mix;
//      settings[generation] holds that revision's number and switches.
//   2. flows (LRU hash): a packet of a flow an earlier packet was allowed
//      for passes (replies included: the key is the flow seen from this
//      node, local and remote, so both directions share it). A flow
//      allowed under an older revision is decided again, once, by the
//      live one, as its first packet was: a new revision cuts what it
//      denies.
//   3. classes_v4 / classes_v6 (LPM trie): the remote address -> its class,
//      the addresses every rule treats alike (backend::ebpf::classes);
//      locals_v4 / locals_v6 the same for the local address (only the
//      node's own: an address it does not own has no class and is dropped).
//   4. verdicts (LPM trie): (generation, direction, remote class, local
//      class, protocol, port) -> the verdict and the counter slot of the
//      rules that decide and count it (backend::ebpf::verdicts): a
//      protocol a rule names has an all-ports entry and port prefixes for
//      the ports answered otherwise, and one shorter entry answers the
//      protocols no rule names, so the longest match is always the
//      first-match answer, resolved when the agent writes the map.
//   5. counters (per-CPU array): packets and bytes per counter slot; the
//      agent adds each slot to the rules it stands for. A slot with a Log
//      or Audit-mode rule (and, under agent-wide audit, every slot) also
//      sends the packet's flow to `events`, which the agent logs.
//
// No verdict: dropped (default deny). Under agent-wide audit every packet
// is counted as under enforcement and passes. Headers are read relative to
// the network header, so the object works on the boringtun TUN device (no
// link-layer header) and on veth or kernel WireGuard alike. Non-first
// fragments carry no ports and are dropped. IPv6 extension headers before
// the transport header are not walked, so a packet with one is dropped
// (taking it for a protocol without ports would let an all-traffic Allow
// pass a TCP packet an earlier port Deny is for).

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

// Counter slots the agent reserves: packets whose local address the node
// does not own, per direction (meshguard:not-ours).
#define SLOT_NOT_OURS_INGRESS 0
#define SLOT_NOT_OURS_EGRESS 1

// What a flow key holds in its remote port for ICMP (its identifier, for
// an echo, in the local port).
#define ICMP_ASKED_HERE 1
#define ICMP_ASKED_THERE 2
#define ICMP_OTHER 0x100

// Maps live under the agent's bpffs directory, so that a restarted agent
// finds the tables the attached programs read and goes on from them.
#define PINNED __uint(pinning, LIBBPF_PIN_BY_NAME)

struct v4_key {
	__u32 prefixlen;
	__u8 generation;
	__u8 addr[4];
} __attribute__((packed));

struct v6_key {
	__u32 prefixlen;
	__u8 generation;
	__u8 addr[16];
} __attribute__((packed));

// Data bits in order: generation (8), direction (8), remote class (32,
// big-endian), local class (32, big-endian), protocol (8), the service's
// port (16, big-endian). The protocols no rule names: an 80-bit prefix;
// every port of one protocol: 88 bits; one port: 104.
struct verdict_key {
	__u32 prefixlen;
	__u8 generation;
	__u8 direction;
	__u8 remote[4];
	__u8 local[4];
	__u8 protocol;
	__u8 port[2];
} __attribute__((packed));

// One generation's settings, written before the generation goes live.
struct settings {
	// The revision's sequence number (never 0 once written).
	__u32 revision;
	// 1: agent-wide audit (count, drop nothing).
	__u32 audit;
	// The agent's handshake starter (wireguard::handshake): its mark and
	// destination UDP port (network order).
	__u32 handshake_mark;
	__u16 handshake_port;
	__u16 pad;
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

struct flow {
	// The revision that last allowed it.
	__u32 revision;
	// The direction of its first packet, whose rules decide it.
	__u8 direction;
	__u8 pad[3];
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	PINNED;
} state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct settings);
	PINNED;
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v4_key);
	__type(value, __u32);
	PINNED;
} classes_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_key);
	__type(value, __u32);
	PINNED;
} classes_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v4_key);
	__type(value, __u32);
	PINNED;
} locals_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_key);
	__type(value, __u32);
	PINNED;
} locals_v6 SEC(".maps");

// Value: the counter slot << 2 | 2 when a rule of the slot logs (a Log
// rule, a rule of an Audit-mode policy) | 1 for Allow.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1048576);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct verdict_key);
	__type(value, __u32);
	PINNED;
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow);
	PINNED;
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct counter);
	PINNED;
} counters SEC(".maps");

// What the agent logs, as the iptables backend's NFLOG would: the first
// packet of a flow that reaches a Log rule or an Audit-mode policy's rule,
// and under agent-wide audit every first packet (its would-be verdict).
// Not pinned: each agent reads its own.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct event {
	__u32 slot;
	__u8 direction;
	__u8 allowed;
	__u8 protocol;
	__u8 family;
	__u8 local[16];
	__u8 remote[16];
	__u16 local_port;
	__u16 remote_port;
};

// Reads the packet's addresses, protocol and ports into `flow`, from this
// node's side; returns 0, or -1 for a packet that cannot be decided. For an
// ICMP error, `*inner` is where the packet it is about starts.
static __always_inline int parse(struct __sk_buff *skb, __u8 direction, struct flow_key *flow, __u32 *inner)
{
	__u32 l4 = 0;
	__u8 protocol = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof(ip), BPF_HDR_START_NET))
			return -1;
		if (ip.version != 4 || ip.ihl < 5)
			return -1;
		if (ip.frag_off & bpf_htons(0x1fff))
			return -1;
		__builtin_memcpy(flow->remote, direction == DIRECTION_INGRESS ? (void *)&ip.saddr : (void *)&ip.daddr, 4);
		__builtin_memcpy(flow->local, direction == DIRECTION_INGRESS ? (void *)&ip.daddr : (void *)&ip.saddr, 4);
		flow->family = 4;
		protocol = ip.protocol;
		l4 = ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes_relative(skb, 0, &ip6, sizeof(ip6), BPF_HDR_START_NET))
			return -1;
		__builtin_memcpy(flow->remote, direction == DIRECTION_INGRESS ? (void *)&ip6.saddr : (void *)&ip6.daddr, 16);
		__builtin_memcpy(flow->local, direction == DIRECTION_INGRESS ? (void *)&ip6.daddr : (void *)&ip6.saddr, 16);
		flow->family = 6;
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

	flow->protocol = protocol;
	if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP) {
		__u16 ports[2];

		if (bpf_skb_load_bytes_relative(skb, l4, ports, sizeof(ports), BPF_HDR_START_NET))
			return -1;
		// ports[0] is the source, ports[1] the destination.
		flow->local_port = direction == DIRECTION_INGRESS ? ports[1] : ports[0];
		flow->remote_port = direction == DIRECTION_INGRESS ? ports[0] : ports[1];
	} else if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) {
		// type, code, checksum, and for echo the identifier.
		__u8 icmp[6];
		__u8 request = protocol == IPPROTO_ICMP ? 8 : 128;
		__u8 reply = protocol == IPPROTO_ICMP ? 0 : 129;

		if (bpf_skb_load_bytes_relative(skb, l4, icmp, sizeof(icmp), BPF_HDR_START_NET))
			return -1;
		if (icmp[0] == request || icmp[0] == reply) {
			// An echo is a flow of its own, as conntrack tracks it: by
			// identifier, and by which side asked, so that a ping this
			// node sends never rides on a flow of pings it answered.
			int asked_here = (icmp[0] == request) == (direction == DIRECTION_EGRESS);

			__builtin_memcpy(&flow->local_port, &icmp[4], 2);
			flow->remote_port = asked_here ? ICMP_ASKED_HERE : ICMP_ASKED_THERE;
		} else {
			// Any other message: a flow per type.
			flow->remote_port = ICMP_OTHER | icmp[0];
			if (protocol == IPPROTO_ICMP ? (icmp[0] == 3 || icmp[0] == 11 || icmp[0] == 12)
						     : (icmp[0] >= 1 && icmp[0] <= 4))
				*inner = l4 + 8;
		}
	}
	// ICMP has no ports: it matches the rules for all its ports.
	return 0;
}

// The flow an ICMP error at `at` is about, into `flow`: the packet quoted
// there went from this node (an error arriving) or to it (an error it
// sends). Returns 0, or -1 when the quoted packet has no ports to tell its
// flow by.
static __always_inline int quoted_flow(struct __sk_buff *skb, __u8 direction, __u32 at, __u8 family, struct flow_key *flow)
{
	__u16 ports[2];
	__u8 protocol;
	__u32 l4;
	// The quoted packet's source is ours when the error arrives.
	int ours_first = direction == DIRECTION_INGRESS;

	if (family == 4) {
		struct iphdr ip;

		if (bpf_skb_load_bytes_relative(skb, at, &ip, sizeof(ip), BPF_HDR_START_NET))
			return -1;
		__builtin_memcpy(flow->local, ours_first ? (void *)&ip.saddr : (void *)&ip.daddr, 4);
		__builtin_memcpy(flow->remote, ours_first ? (void *)&ip.daddr : (void *)&ip.saddr, 4);
		protocol = ip.protocol;
		l4 = at + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes_relative(skb, at, &ip6, sizeof(ip6), BPF_HDR_START_NET))
			return -1;
		__builtin_memcpy(flow->local, ours_first ? (void *)&ip6.saddr : (void *)&ip6.daddr, 16);
		__builtin_memcpy(flow->remote, ours_first ? (void *)&ip6.daddr : (void *)&ip6.saddr, 16);
		protocol = ip6.nexthdr;
		l4 = at + sizeof(ip6);
	}
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP && protocol != IPPROTO_SCTP)
		return -1;
	if (bpf_skb_load_bytes_relative(skb, l4, ports, sizeof(ports), BPF_HDR_START_NET))
		return -1;
	flow->local_port = ours_first ? ports[0] : ports[1];
	flow->remote_port = ours_first ? ports[1] : ports[0];
	flow->protocol = protocol;
	flow->family = family;
	return 0;
}

// The class of `addr` in one of the class tries of `generation`; -1: none.
static __always_inline __s64 class_of(void *v4, void *v6, __u8 generation, struct flow_key *flow, __u8 *addr)
{
	__u32 *found;

	if (flow->family == 4) {
		struct v4_key key = {.prefixlen = 8 + 32, .generation = generation};

		__builtin_memcpy(key.addr, addr, 4);
		found = bpf_map_lookup_elem(v4, &key);
	} else {
		struct v6_key key = {.prefixlen = 8 + 128, .generation = generation};

		__builtin_memcpy(key.addr, addr, 16);
		found = bpf_map_lookup_elem(v6, &key);
	}
	return found ? (__s64)*found : -1;
}

// The verdict map's value for `flow` decided as a flow whose first packet
// went in `direction`; 0 (deny, slot 0 is never a verdict's) when nothing
// answers. A local address the node does not own gives `not_ours`.
static __always_inline __u32 verdict_of(__u8 generation, __u8 direction, struct flow_key *flow, int *not_ours)
{
	struct verdict_key key = {.prefixlen = 104, .generation = generation, .direction = direction};
	__s64 remote = class_of(&classes_v4, &classes_v6, generation, flow, flow->remote);
	__s64 local = class_of(&locals_v4, &locals_v6, generation, flow, flow->local);
	// The service's port: the local one for ingress, the remote one for egress.
	__u16 port = direction == DIRECTION_INGRESS ? flow->local_port : flow->remote_port;
	__u32 *verdict;

	if (local < 0) {
		*not_ours = 1;
		return 0;
	}
	if (remote < 0)
		return 0;
	__builtin_memcpy(key.remote, &(__u32){bpf_htonl((__u32)remote)}, 4);
	__builtin_memcpy(key.local, &(__u32){bpf_htonl((__u32)local)}, 4);
	key.protocol = flow->protocol;
	__builtin_memcpy(key.port, &port, 2);
	verdict = bpf_map_lookup_elem(&verdicts, &key);
	return verdict ? *verdict : 0;
}

static __always_inline void count(__u32 slot, struct __sk_buff *skb)
{
	struct counter *counter = bpf_map_lookup_elem(&counters, &slot);

	if (counter) {
		counter->packets += 1;
		counter->bytes += skb->len;
	}
}

// Sends one event to the agent; a full ring drops it (the counters still
// count the packet).
static __always_inline void report(__u32 slot, __u8 direction, __u8 allowed, struct flow_key *flow)
{
	struct event event = {.slot = slot, .direction = direction, .allowed = allowed,
			      .protocol = flow->protocol, .family = flow->family,
			      .local_port = flow->local_port, .remote_port = flow->remote_port};

	__builtin_memcpy(event.local, flow->local, 16);
	__builtin_memcpy(event.remote, flow->remote, 16);
	bpf_ringbuf_output(&events, &event, sizeof(event), 0);
}

static __always_inline int decide(struct __sk_buff *skb, __u8 direction)
{
	struct flow_key key = {};
	struct flow *known;
	struct settings *now;
	__u32 inner = 0;
	__u32 zero = 0;
	__u32 *live;
	__u32 verdict;
	__u8 generation;
	int not_ours = 0;

	// Not IP: nothing meshguard governs (ARP on a veth; a TUN carries none).
	if (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6))
		return TC_ACT_OK;
	live = bpf_map_lookup_elem(&state, &zero);
	if (!live)
		return TC_ACT_SHOT;
	generation = *live & 1;
	now = bpf_map_lookup_elem(&settings, &(__u32){generation});
	// Before the first revision: nothing is allowed yet.
	if (!now || now->revision == 0)
		return TC_ACT_SHOT;
	if (parse(skb, direction, &key, &inner))
		return now->audit ? TC_ACT_OK : TC_ACT_SHOT;

	known = bpf_map_lookup_elem(&flows, &key);
	if (!known && inner) {
		// An ICMP error about a flow allowed now passes with it, as
		// conntrack's RELATED does (a port unreachable, a packet too big).
		struct flow_key quoted = {};

		if (!quoted_flow(skb, direction, inner, key.family, &quoted)) {
			struct flow *about = bpf_map_lookup_elem(&flows, &quoted);

			if (about && about->revision == now->revision)
				return TC_ACT_OK;
		}
	}
	if (known) {
		if (known->revision == now->revision || now->audit)
			return TC_ACT_OK;
		verdict = verdict_of(generation, known->direction, &key, &not_ours);
		if (verdict & 1) {
			known->revision = now->revision;
			return TC_ACT_OK;
		}
		bpf_map_delete_elem(&flows, &key);
		return TC_ACT_SHOT;
	}

	verdict = verdict_of(generation, direction, &key, &not_ours);
	if (not_ours) {
		__u32 slot = direction == DIRECTION_INGRESS ? SLOT_NOT_OURS_INGRESS : SLOT_NOT_OURS_EGRESS;

		count(slot, skb);
		if (now->audit)
			report(slot, direction, 0, &key);
	} else if (direction == DIRECTION_EGRESS && key.protocol == IPPROTO_UDP &&
		   skb->mark == now->handshake_mark && key.remote_port == now->handshake_port) {
		// The agent's own handshake starter; see wireguard::handshake.
		return TC_ACT_OK;
	} else if (verdict) {
		count(verdict >> 2, skb);
		if ((verdict & 2) || now->audit)
			report(verdict >> 2, direction, verdict & 1, &key);
	}
	if ((verdict & 1) || now->audit) {
		struct flow flow = {.revision = now->revision, .direction = direction};

		bpf_map_update_elem(&flows, &key, &flow, BPF_ANY);
		return TC_ACT_OK;
	}
	return TC_ACT_SHOT;
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
