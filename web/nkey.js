// NATS user nkeys in the browser: decode a user seed ("SU..."), derive its public key ("U...")
// and sign the server's nonce with WebCrypto's Ed25519. The seed stays in memory only: it is
// imported as a non-extractable signing key once the public key is read from a throw-away copy.
// A classic script (modules do not load from file://): it adds its names to globalThis.nodeha.
"use strict";
(() => {
  const kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const kPrefixSeed = 18 << 3;  // 'S'
  const kPrefixUser = 20 << 3;  // 'U'
  // PKCS#8 wrapping of a raw 32-byte Ed25519 private key (RFC 8410): the fixed 16-byte header.
  const kPkcs8Head = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

  function base32Encode(bytes) {
    let out = "", bits = 0, value = 0;
    for (const b of bytes) {
      value = (value << 8) | b;
      bits += 8;
      while (bits >= 5) {
        out += kAlphabet[(value >>> (bits - 5)) & 31];
        bits -= 5;
      }
    }
    if (bits > 0) out += kAlphabet[(value << (5 - bits)) & 31];
    return out;
  }

  function base32Decode(text) {
    const out = [];
    let bits = 0, value = 0;
    for (const ch of text) {
      const v = kAlphabet.indexOf(ch);
      if (v < 0) throw new Error(`not base32: '${ch}'`);
      value = ((value << 5) | v) & 0xffff;
      bits += 5;
      if (bits >= 8) {
        out.push((value >>> (bits - 8)) & 0xff);
        bits -= 8;
      }
    }
    return new Uint8Array(out);
  }

  // CRC-16/XMODEM (polynomial 0x1021, initial 0), as nkeys use it.
  function crc16(bytes) {
    let crc = 0;
    for (const b of bytes) {
      crc ^= b << 8;
      for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  }

  function withCrc(body) {
    const crc = crc16(body);
    const out = new Uint8Array(body.length + 2);
    out.set(body);
    out[body.length] = crc & 0xff;
    out[body.length + 1] = crc >> 8;
    return out;
  }

  // The 32 bytes of Ed25519 seed inside a user seed; throws with a message a person can act on.
  function decodeUserSeed(seed) {
    const text = String(seed).trim();
    if (!/^SU[A-Z2-7]{56}$/.test(text)) throw new Error("the seed must be a NATS user seed: 'SU' and 56 base32 characters");
    const raw = base32Decode(text);
    if (raw.length !== 36) throw new Error("the seed has the wrong length");
    const body = raw.subarray(0, 34);
    const crc = raw[34] | (raw[35] << 8);
    if (crc16(body) !== crc) throw new Error("the seed's checksum does not match (a typo?)");
    const prefix = raw[0] & 0xf8;
    const type = ((raw[0] & 0x07) << 5) | ((raw[1] & 0xf8) >> 3);
    if (prefix !== kPrefixSeed || type !== kPrefixUser) throw new Error("the seed is not a user seed");
    return raw.slice(2, 34);
  }

  function encodeUserPublicKey(publicKey32) {
    const body = new Uint8Array(33);
    body[0] = kPrefixUser;
    body.set(publicKey32, 1);
    return base32Encode(withCrc(body));
  }

  function base64UrlDecode(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "==".slice(0, (4 - (text.length % 4)) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  }

  function base64UrlEncode(bytes) {
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // {publicKey: "U...", sign(nonceText) -> base64url signature}. Throws on a bad seed or when this
  // browser's WebCrypto has no Ed25519.
  async function userKeyFromSeed(seed) {
    const raw = decodeUserSeed(seed);
    const pkcs8 = new Uint8Array(kPkcs8Head.length + 32);
    pkcs8.set(kPkcs8Head);
    pkcs8.set(raw, kPkcs8Head.length);
    raw.fill(0);
    let jwk, key;
    try {
      const exportable = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
      jwk = await crypto.subtle.exportKey("jwk", exportable);
      key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
    } catch (e) {
      throw new Error(`this browser cannot use Ed25519 keys (${e.message})`);
    } finally {
      pkcs8.fill(0);
    }
    const publicKey = encodeUserPublicKey(base64UrlDecode(jwk.x));
    return {
      publicKey,
      async sign(nonce) {
        const sig = await crypto.subtle.sign({ name: "Ed25519" }, key, new TextEncoder().encode(nonce));
        return base64UrlEncode(new Uint8Array(sig));
      },
    };
  }

  Object.assign((globalThis.nodeha ??= {}), { base32Encode, base32Decode, crc16, decodeUserSeed, encodeUserPublicKey, base64UrlEncode, userKeyFromSeed });
})();
