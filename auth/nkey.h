// NATS user nkeys: an Ed25519 key pair in NATS' text form (base32 with a type prefix and a
// CRC16), so nats-server can hold only the public key ("U...") and the client alone the seed
// ("SU..."). Generation uses OpenSSL's Ed25519; signing at connect time is cnats' nats_Sign.
#pragma once

#include <nodeha/plugin.hpp>

#include <string>

namespace nodeha::auth {

struct UserNkey {
  std::string public_key;  // "U" + 55 characters: what the server config names
  std::string seed;        // "SU" + 56 characters: the secret
};

// A fresh key pair from the system's random source.
Result<UserNkey> generate_user_nkey();

// The public key a user seed belongs to; INVALID when `seed` is not a well-formed user seed.
Result<std::string> public_key_of_seed(const std::string& seed);

}  // namespace nodeha::auth
