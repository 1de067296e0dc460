// XML from the bus, parsed with libxml2 (the parser libvirt itself uses, so both read the same
// tree) and nothing more: no network, no DTD, no entity expansion, at most kMaxXmlBytes, no NUL.
// The parser stops at the start of a <!DOCTYPE> and the document is refused, so no entity is ever
// declared: a billion-laughs payload and an external entity (file:///etc/passwd) fail alike.
// Pure and thread-safe (libxml2 is initialised once, on first use).
#pragma once

#include <libxml/tree.h>

#include <memory>
#include <string>
#include <string_view>

namespace nodeha::vms {

inline constexpr size_t kMaxXmlBytes = 1 << 20;

struct XmlDocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using XmlDoc = std::unique_ptr<xmlDoc, XmlDocFree>;

// The document, or null with `*error` saying why ("not XML: line 1: ...", "larger than 1 MiB").
XmlDoc parse_untrusted_xml(std::string_view text, std::string* error);

// Helpers over a parsed tree. Attributes are read without a namespace, as libvirt reads them.
std::string xml_name(const xmlNode* n);                         // the local name
std::string xml_attribute(const xmlNode* n, const char* name);  // empty when absent
bool xml_has_attribute(const xmlNode* n, const char* name);
std::string xml_text(const xmlNode* n);  // the text content, as libvirt's string() XPath reads it

}  // namespace nodeha::vms
