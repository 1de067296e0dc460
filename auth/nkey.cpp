#include "nkey.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace nodeha::auth {
namespace {

// The nkey type bytes: the high 5 bits spell the first base32 letter.
constexpr uint8_t kPrefixSeed = 18 << 3;  // 'S'
constexpr uint8_t kPrefixUser = 20 << 3;  // 'U'
constexpr char kBase32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// CRC-16/XMODEM (polynomial 0x1021, initial 0), as nkeys checksum their payload.
uint16_t crc16(const std::vector<uint8_t>& data) {
  uint16_t crc = 0;
  for (uint8_t byte : data) {
    crc ^= static_cast<uint16_t>(byte) << 8;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
  }
  return crc;
}

// RFC 4648 base32, no padding.
std::string base32(const std::vector<uint8_t>& data) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t byte : data) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += kBase32[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kBase32[(buffer << (5 - bits)) & 31];
  return out;
}

std::optional<std::vector<uint8_t>> unbase32(const std::string& text) {
  std::vector<uint8_t> out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const char* at = std::char_traits<char>::find(kBase32, 32, c);
    if (!at) return std::nullopt;
    buffer = (buffer << 5) | static_cast<uint32_t>(at - kBase32);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<uint8_t>(buffer >> (bits - 8)));
      bits -= 8;
    }
  }
  return out;
}

// Prefix bytes + payload + CRC16 (little-endian), base32.
std::string encode(std::vector<uint8_t> raw) {
  uint16_t crc = crc16(raw);
  raw.push_back(static_cast<uint8_t>(crc & 0xff));
  raw.push_back(static_cast<uint8_t>(crc >> 8));
  return base32(raw);
}

std::string encode_public(const uint8_t* key) {
  std::vector<uint8_t> raw{kPrefixUser};
  raw.insert(raw.end(), key, key + 32);
  return encode(std::move(raw));
}

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Result<std::string> public_from_raw_seed(const uint8_t* seed) {
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, 32), &EVP_PKEY_free);
  std::array<uint8_t, 32> pub{};
  size_t len = pub.size();
  if (!key || EVP_PKEY_get_raw_public_key(key.get(), pub.data(), &len) != 1 || len != pub.size())
    return Status(NODEHA_ERR_INTERNAL, "OpenSSL could not derive an Ed25519 public key");
  return encode_public(pub.data());
}

}  // namespace

Result<UserNkey> generate_user_nkey() {
  std::array<uint8_t, 32> seed{};
  if (RAND_bytes(seed.data(), static_cast<int>(seed.size())) != 1)
    return Status(NODEHA_ERR_INTERNAL, "OpenSSL's random source failed");
  auto pub = public_from_raw_seed(seed.data());
  if (!pub) return pub.status();
  std::vector<uint8_t> raw{static_cast<uint8_t>(kPrefixSeed | (kPrefixUser >> 5)), static_cast<uint8_t>((kPrefixUser & 31) << 3)};
  raw.insert(raw.end(), seed.begin(), seed.end());
  UserNkey out{pub.value(), encode(std::move(raw))};
  OPENSSL_cleanse(seed.data(), seed.size());
  return out;
}

Result<std::string> public_key_of_seed(const std::string& seed) {
  auto bad = Status(NODEHA_ERR_INVALID, "not an nkey user seed (58 characters starting with SU)");
  if (seed.size() != 58 || seed.rfind("SU", 0) != 0) return bad;
  auto raw = unbase32(seed);
  if (!raw || raw->size() != 36) return bad;
  uint16_t crc = static_cast<uint16_t>((*raw)[34] | ((*raw)[35] << 8));
  raw->resize(34);
  if (crc16(*raw) != crc) return Status(NODEHA_ERR_INVALID, "nkey seed: checksum mismatch (a character was changed)");
  auto pub = public_from_raw_seed(raw->data() + 2);
  OPENSSL_cleanse(raw->data(), raw->size());
  return pub;
}

}  // namespace nodeha::auth
