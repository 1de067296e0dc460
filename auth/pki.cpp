#include "pki.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <memory>

namespace nodeha::auth {
namespace {

template <auto Fn>
struct Free {
  template <class T>
  void operator()(T* p) const { if (p) Fn(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using CertPtr = std::unique_ptr<X509, Free<X509_free>>;
using BioPtr = std::unique_ptr<BIO, Free<BIO_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;

Status openssl_failed(const std::string& what) { return Status(NODEHA_ERR_INTERNAL, "OpenSSL: " + what + " failed"); }

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

// Adds one v3 extension written in OpenSSL's config syntax ("critical,CA:TRUE").
bool add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key`, with a random serial, valid from now for `days`, not yet signed.
CertPtr new_cert(EVP_PKEY* key, const std::string& common_name, int days) {
  CertPtr cert(X509_new());
  BnPtr serial(BN_new());
  if (!cert || !serial || !BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY)) return nullptr;
  ASN1_INTEGER* sn = X509_get_serialNumber(cert.get());
  if (!BN_to_ASN1_INTEGER(serial.get(), sn) || X509_set_version(cert.get(), 2) != 1) return nullptr;
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);  // tolerate a little clock skew
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("nodeha"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  if (X509_set_pubkey(cert.get(), key) != 1) return nullptr;
  return cert;
}

Result<KeyAndCert> finish(EVP_PKEY* key, X509* cert, EVP_PKEY* signer) {
  if (X509_sign(cert, signer, EVP_sha256()) <= 0) return openssl_failed("signing the certificate");
  BioPtr key_bio(BIO_new(BIO_s_mem())), cert_bio(BIO_new(BIO_s_mem()));
  if (!key_bio || !cert_bio || PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_X509(cert_bio.get(), cert) != 1)
    return openssl_failed("writing PEM");
  return KeyAndCert{bio_text(key_bio.get()), bio_text(cert_bio.get())};
}

}  // namespace

Result<KeyAndCert> make_ca(const std::string& common_name, int days) {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return openssl_failed("generating the CA key");
  CertPtr cert = new_cert(key.get(), common_name, days);
  if (!cert || X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) != 1 ||
      !add_ext(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_ext(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_ext(cert.get(), cert.get(), NID_subject_key_identifier, "hash"))
    return openssl_failed("building the CA certificate");
  return finish(key.get(), cert.get(), key.get());
}

Result<KeyAndCert> make_server_cert(const KeyAndCert& ca, const std::vector<std::string>& dns_names,
                                    const std::vector<std::string>& ips, int days) {
  std::string san;
  for (const auto& d : dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : ips) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1)
      return Status(NODEHA_ERR_INVALID, fmt::format("--ip {}: not an IPv4 or IPv6 address", ip));
    san += (san.empty() ? "IP:" : ",IP:") + ip;
  }
  if (san.empty()) return Status(NODEHA_ERR_INVALID, "the server certificate needs at least one --host or --ip");
  BioPtr ca_key_bio(BIO_new_mem_buf(ca.key_pem.data(), static_cast<int>(ca.key_pem.size())));
  BioPtr ca_cert_bio(BIO_new_mem_buf(ca.cert_pem.data(), static_cast<int>(ca.cert_pem.size())));
  KeyPtr ca_key(PEM_read_bio_PrivateKey(ca_key_bio.get(), nullptr, nullptr, nullptr));
  CertPtr ca_cert(PEM_read_bio_X509(ca_cert_bio.get(), nullptr, nullptr, nullptr));
  if (!ca_key || !ca_cert) return Status(NODEHA_ERR_INVALID, "the CA's key or certificate does not parse");
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return openssl_failed("generating the server key");
  std::string cn = !dns_names.empty() ? dns_names.front() : ips.front();
  CertPtr cert = new_cert(key.get(), cn, days);
  if (!cert || X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get())) != 1 ||
      !add_ext(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
      !add_ext(cert.get(), ca_cert.get(), NID_ext_key_usage, "serverAuth") ||
      !add_ext(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid") ||
      !add_ext(cert.get(), ca_cert.get(), NID_subject_alt_name, san))
    return openssl_failed("building the server certificate");
  return finish(key.get(), cert.get(), ca_key.get());
}

}  // namespace nodeha::auth
