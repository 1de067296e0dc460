#include "route.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace nodeha::migrate {
namespace {

struct Address {
  int family = 0;
  unsigned char bytes[16] = {};
  size_t size() const { return family == AF_INET ? 4 : 16; }
};

std::optional<Address> parse_ip(const std::string& text) {
  Address a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes) == 1) a.family = AF_INET;
  else if (inet_pton(AF_INET6, text.c_str(), a.bytes) == 1) a.family = AF_INET6;
  else return std::nullopt;
  return a;
}

const unsigned char* raw_of(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) return reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
  return reinterpret_cast<const unsigned char*>(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
}

bool same_subnet(const Address& dest, const sockaddr* addr, const sockaddr* mask) {
  if (!addr || !mask || addr->sa_family != dest.family || mask->sa_family != dest.family) return false;
  const unsigned char* a = raw_of(addr);
  const unsigned char* m = raw_of(mask);
  for (size_t i = 0; i < dest.size(); ++i)
    if ((a[i] & m[i]) != (dest.bytes[i] & m[i])) return false;
  return true;
}

// The index of the interface the kernel routes `dest` through (RTM_GETROUTE, like `ip route
// get`); 0 when it cannot say.
unsigned route_oif(const Address& dest) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return 0;
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct {
    nlmsghdr header;
    rtmsg route;
    char attrs[64];
  } req{};
  req.header.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  req.header.nlmsg_type = RTM_GETROUTE;
  req.header.nlmsg_flags = NLM_F_REQUEST;
  req.header.nlmsg_seq = 1;
  req.route.rtm_family = static_cast<unsigned char>(dest.family);
  req.route.rtm_dst_len = static_cast<unsigned char>(dest.size() * 8);
  auto* attr = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(req.header.nlmsg_len));
  attr->rta_type = RTA_DST;
  attr->rta_len = static_cast<unsigned short>(RTA_LENGTH(dest.size()));
  std::memcpy(RTA_DATA(attr), dest.bytes, dest.size());
  req.header.nlmsg_len = NLMSG_ALIGN(req.header.nlmsg_len) + RTA_ALIGN(attr->rta_len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  unsigned oif = 0;
  if (sendto(fd, &req, req.header.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) >= 0) {
    std::vector<char> buf(8192);
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); n > 0 && NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type != RTM_NEWROUTE) continue;
      auto* rt = static_cast<rtmsg*>(NLMSG_DATA(h));
      int len = static_cast<int>(RTM_PAYLOAD(h));
      for (auto* a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == RTA_OIF) oif = *static_cast<unsigned*>(RTA_DATA(a));
    }
  }
  close(fd);
  return oif;
}

}  // namespace

std::optional<std::string> route_mismatch(const std::string& interface, const std::string& dest) {
  auto address = parse_ip(dest);
  if (!address) return "\"" + dest + "\" is not an IP address";
  unsigned index = if_nametoindex(interface.c_str());
  if (index == 0) return "there is no interface \"" + interface + "\" on this node";
  ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0) return "cannot list the interfaces: " + std::string(std::strerror(errno));
  bool up = false, on_subnet = false;
  for (ifaddrs* i = all; i; i = i->ifa_next) {
    if (!i->ifa_name || interface != i->ifa_name) continue;
    up = up || (i->ifa_flags & IFF_UP);
    on_subnet = on_subnet || same_subnet(*address, i->ifa_addr, i->ifa_netmask);
  }
  freeifaddrs(all);
  if (!up) return "interface \"" + interface + "\" is down";
  unsigned oif = route_oif(*address);
  if (oif == index) return std::nullopt;
  if (oif == 0) {
    // The kernel did not answer (no route, or netlink refused): a destination on one of the
    // interface's own subnets is reached through it all the same.
    if (on_subnet) return std::nullopt;
    return "there is no route to " + dest + " and it is not on a subnet of \"" + interface + "\"";
  }
  char name[IF_NAMESIZE] = {};
  return dest + " is routed through \"" + std::string(if_indextoname(oif, name) ? name : "?") + "\", not \"" +
         interface + "\" (the migration stream follows the kernel's route; see `ip route get " + dest + "`)";
}

}  // namespace nodeha::migrate
