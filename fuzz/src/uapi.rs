//! `uapi`: any text as a WireGuard daemon's reply to `get`, through the
//! agent's UAPI client (`parse_reply`, `parse_get`). What must hold: a reply
//! is read whole or refused — one peer per `public_key` line, none dropped
//! — and what is read is what the reply says: written back as a reply and
//! read again, it is the same.

use meshguard_agent::wireguard::uapi::{parse_get, parse_reply, render_get};

/// Returns whether the reply was read (`false`: refused).
pub fn uapi(data: &[u8]) -> bool {
    // The client reads lines as UTF-8 and fails on anything else.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(lines) = parse_reply(text, "get") else {
        return false;
    };
    let Ok(state) = parse_get(&lines) else {
        return false;
    };
    let keys = lines.iter().filter(|(key, _)| key == "public_key").count();
    assert_eq!(state.peers.len(), keys, "a peer was dropped: {text:?}");
    let written = render_get(&state);
    let again = parse_reply(&written, "get")
        .and_then(|lines| parse_get(&lines))
        .unwrap_or_else(|e| panic!("its own rendering does not read back: {e}: {written:?}"));
    assert_eq!(again, state, "read back differently: {written:?}");
    true
}
