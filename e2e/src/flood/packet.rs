//! The packets: one flow's packets built by hand (a TCP SYN, a UDP
//! datagram, an ICMP echo request, each carrying [`MARKER`]) and the
//! receiver's reading of what a raw IPv4 socket delivers (IP header first).
//! Pure: bytes in, bytes out.

use std::net::Ipv4Addr;

/// Carried in every packet's payload: a packet without it is not ours.
pub const MARKER: &[u8] = b"meshguard-flood";

/// The protocols a flow is flooded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    /// The IP protocol number (the raw socket's protocol).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
        }
    }
}

/// The source port of flooded TCP SYNs and UDP datagrams (no socket owns
/// it, so a SYN-ACK is answered by a reset and nothing else changes).
pub const SOURCE_PORT: u16 = 47_111;

/// The transport header and payload of one packet of the flow (the kernel
/// adds the IP header). `sequence` goes into the TCP sequence number, the
/// ICMP sequence and the payload, so packets differ.
pub fn packet(
    protocol: Protocol,
    from: Ipv4Addr,
    to: Ipv4Addr,
    port: u16,
    identifier: u16,
    sequence: u32,
) -> Vec<u8> {
    let mut payload = MARKER.to_vec();
    payload.extend_from_slice(&sequence.to_be_bytes());
    match protocol {
        Protocol::Tcp => {
            let mut segment = Vec::with_capacity(20 + payload.len());
            segment.extend_from_slice(&SOURCE_PORT.to_be_bytes());
            segment.extend_from_slice(&port.to_be_bytes());
            segment.extend_from_slice(&sequence.to_be_bytes());
            segment.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
            segment.push(5 << 4); // data offset: 5 words, no options
            segment.push(0x02); // SYN
            segment.extend_from_slice(&64_240u16.to_be_bytes()); // window
            segment.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
            segment.extend_from_slice(&payload);
            let sum = checksum(&[&pseudo_header(from, to, 6, segment.len()), &segment]);
            segment[16..18].copy_from_slice(&sum.to_be_bytes());
            segment
        }
        Protocol::Udp => {
            let length = 8 + payload.len();
            let mut datagram = Vec::with_capacity(length);
            datagram.extend_from_slice(&SOURCE_PORT.to_be_bytes());
            datagram.extend_from_slice(&port.to_be_bytes());
            datagram.extend_from_slice(&(length as u16).to_be_bytes());
            datagram.extend_from_slice(&[0, 0]);
            datagram.extend_from_slice(&payload);
            let sum = checksum(&[&pseudo_header(from, to, 17, length), &datagram]);
            // 0 means "no checksum" in UDP over IPv4; all ones stands for it.
            let sum = if sum == 0 { 0xffff } else { sum };
            datagram[6..8].copy_from_slice(&sum.to_be_bytes());
            datagram
        }
        Protocol::Icmp => echo_request(identifier, sequence as u16, &payload),
    }
}

/// An ICMP echo request (type 8) with its checksum.
pub fn echo_request(identifier: u16, sequence: u16, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![8, 0, 0, 0];
    message.extend_from_slice(&identifier.to_be_bytes());
    message.extend_from_slice(&sequence.to_be_bytes());
    message.extend_from_slice(payload);
    let sum = checksum(&[&message]);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    message
}

fn pseudo_header(from: Ipv4Addr, to: Ipv4Addr, protocol: u8, length: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(12);
    header.extend_from_slice(&from.octets());
    header.extend_from_slice(&to.octets());
    header.extend_from_slice(&[0, protocol]);
    header.extend_from_slice(&(length as u16).to_be_bytes());
    header
}

/// The Internet checksum (RFC 1071) over the parts, in order.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for byte in parts.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            None => odd = Some(byte),
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a raw IPv4 socket received, when it is one of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub from: Ipv4Addr,
    pub protocol: u8,
    /// The destination port (TCP, UDP) or the ICMP type.
    pub port_or_type: u16,
    /// The ICMP identifier (0 for TCP and UDP).
    pub identifier: u16,
    /// The ICMP sequence (0 for TCP and UDP).
    pub sequence: u16,
}

/// Reads a packet as a raw IPv4 socket delivers it (IP header first);
/// `None` unless it is well formed and carries [`MARKER`].
pub fn recognise(packet: &[u8]) -> Option<Seen> {
    let (&first, _) = packet.split_first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header = usize::from(first & 0x0f) * 4;
    let protocol = *packet.get(9)?;
    let from = Ipv4Addr::from(<[u8; 4]>::try_from(packet.get(12..16)?).ok()?);
    let transport = packet.get(header..)?;
    let word = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([
            *transport.get(at)?,
            *transport.get(at + 1)?,
        ]))
    };
    let (port_or_type, identifier, sequence, payload) = match protocol {
        6 => {
            let offset = usize::from(transport.get(12)? >> 4) * 4;
            (word(2)?, 0, 0, transport.get(offset..)?)
        }
        17 => (word(2)?, 0, 0, transport.get(8..)?),
        1 => (
            u16::from(*transport.first()?),
            word(4)?,
            word(6)?,
            transport.get(8..)?,
        ),
        _ => return None,
    };
    payload.starts_with(MARKER).then_some(Seen {
        from,
        protocol,
        port_or_type,
        identifier,
        sequence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (no options) in front of a transport part, as the
    /// receiving raw socket delivers it.
    fn framed(protocol: u8, from: Ipv4Addr, to: Ipv4Addr, transport: &[u8]) -> Vec<u8> {
        let mut header = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0];
        header[2..4].copy_from_slice(&((20 + transport.len()) as u16).to_be_bytes());
        header.extend_from_slice(&from.octets());
        header.extend_from_slice(&to.octets());
        let sum = checksum(&[&header]);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        header.extend_from_slice(transport);
        header
    }

    /// RFC 1071's worked example: the one's complement sum of these words
    /// is 0xddf2, so the checksum is its complement.
    #[test]
    fn the_checksum_is_rfc_1071s() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        // Split anywhere, odd parts included: the same sum.
        assert_eq!(checksum(&[&data[..3], &data[3..]]), !0xddf2);
    }

    #[test]
    fn each_packet_sums_to_zero_with_its_checksum_and_is_recognised() {
        let (from, to) = (Ipv4Addr::new(100, 96, 0, 1), Ipv4Addr::new(100, 96, 0, 2));
        for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Icmp] {
            let transport = packet(protocol, from, to, 22, 77, 9);
            let verified = match protocol {
                Protocol::Icmp => checksum(&[&transport]),
                _ => checksum(&[
                    &pseudo_header(from, to, protocol.number(), transport.len()),
                    &transport,
                ]),
            };
            assert_eq!(verified, 0, "{protocol:?}: the receiver's sum over it");
            let seen = recognise(&framed(protocol.number(), from, to, &transport))
                .unwrap_or_else(|| panic!("{protocol:?} not recognised"));
            assert_eq!((seen.from, seen.protocol), (from, protocol.number()));
            match protocol {
                Protocol::Icmp => assert_eq!(
                    (seen.port_or_type, seen.identifier, seen.sequence),
                    (8, 77, 9)
                ),
                _ => assert_eq!(seen.port_or_type, 22),
            }
        }
    }

    #[test]
    fn packets_without_the_marker_or_cut_short_are_not_counted() {
        let (from, to) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut transport = packet(Protocol::Udp, from, to, 53, 0, 1);
        let whole = framed(17, from, to, &transport);
        for cut in 0..whole.len() - 4 {
            // Cut inside the marker or before it: never counted, never a panic.
            assert_eq!(recognise(&whole[..cut]), None, "cut at {cut}");
        }
        transport[8] ^= 0xff;
        assert_eq!(recognise(&framed(17, from, to, &transport)), None);
        assert_eq!(recognise(&framed(47, from, to, &transport)), None);
    }
}
