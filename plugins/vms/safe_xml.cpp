#include "safe_xml.h"

#include <libxml/parser.h>
#include <libxml/xmlerror.h>

#include <mutex>

namespace nodeha::vms {
namespace {

struct ParserFree {
  void operator()(xmlParserCtxt* c) const { xmlFreeParserCtxt(c); }
};

// The parser stops at the start of a <!DOCTYPE>, before any declaration in it is read. A check on
// the raw text would miss one written in another encoding (UTF-7, EBCDIC, ...).
// The flag is per thread: the callback gets only the parser (whose _private a reset may clear).
thread_local bool t_doctype = false;

void refuse_doctype(void* ctx, const xmlChar*, const xmlChar*, const xmlChar*) {
  t_doctype = true;
  xmlStopParser(static_cast<xmlParserCtxt*>(ctx));
}

std::string owned_string(xmlChar* s) {
  if (!s) return {};
  std::string out(reinterpret_cast<const char*>(s));
  xmlFree(s);
  return out;
}

}  // namespace

XmlDoc parse_untrusted_xml(std::string_view text, std::string* error) {
  static std::once_flag init;
  std::call_once(init, [] { xmlInitParser(); });
  if (text.size() > kMaxXmlBytes) {
    *error = "larger than 1 MiB (" + std::to_string(text.size()) + " bytes)";
    return nullptr;
  }
  if (text.find('\0') != std::string_view::npos) {
    *error = "contains a NUL byte";  // libvirt would read only what comes before it
    return nullptr;
  }
  std::unique_ptr<xmlParserCtxt, ParserFree> ctxt(xmlNewParserCtxt());
  if (!ctxt || !ctxt->sax) {
    *error = "cannot be parsed: out of memory";
    return nullptr;
  }
  // Entities can only be declared in a DTD: without one there is nothing to expand or fetch.
  t_doctype = false;
  ctxt->sax->internalSubset = &refuse_doctype;
  // Deliberately absent: XML_PARSE_NOENT (substitutes entities), XML_PARSE_DTDLOAD / DTDATTR /
  // DTDVALID (read a DTD), XML_PARSE_XINCLUDE, XML_PARSE_HUGE (lifts libxml2's own limits).
  const int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;
  XmlDoc doc(xmlCtxtReadMemory(ctxt.get(), text.data(), static_cast<int>(text.size()), "domain.xml", nullptr, options));
  if (t_doctype) {  // stopped there; whatever libxml2 returns is cut short
    *error = "has a <!DOCTYPE> (DTDs and entity declarations are not accepted)";
    return nullptr;
  }
  if (!doc) {
    const xmlError* e = xmlCtxtGetLastError(ctxt.get());
    std::string why = e && e->message ? e->message : "unknown error";
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    *error = "is not well-formed XML (line " + std::to_string(e ? e->line : 0) + ": " + why + ")";
    return nullptr;
  }
  if (doc->intSubset || doc->extSubset) {  // unreachable: refuse_doctype ran first
    *error = "has a DTD";
    return nullptr;
  }
  return doc;
}

std::string xml_name(const xmlNode* n) { return n && n->name ? reinterpret_cast<const char*>(n->name) : ""; }

std::string xml_attribute(const xmlNode* n, const char* name) {
  return owned_string(xmlGetNoNsProp(n, reinterpret_cast<const xmlChar*>(name)));
}

bool xml_has_attribute(const xmlNode* n, const char* name) {
  return xmlHasNsProp(n, reinterpret_cast<const xmlChar*>(name), nullptr) != nullptr;
}

std::string xml_text(const xmlNode* n) { return owned_string(xmlNodeGetContent(n)); }

}  // namespace nodeha::vms
