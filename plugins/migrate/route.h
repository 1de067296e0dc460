// Whether traffic to `dest` leaves through `interface`, as the kernel routes it now.
//
// Neither libvirt nor QEMU can bind a migration stream to a source interface (QEMU's tcp: URI
// takes no SO_BINDTODEVICE, libvirt no source address): the stream follows the kernel's route to
// the destination address. `nodeha local migrate --interface IF --dest IP` therefore checks that
// IF exists and is up and that the kernel's route to IP (what `ip route get IP` shows) leaves
// through IF, and refuses otherwise instead of quietly sending the stream elsewhere.
#pragma once

#include <optional>
#include <string>

namespace nodeha::migrate {

// Empty when the stream to `dest` goes through `interface`; otherwise why not, for a person.
// Blocking only briefly (one netlink round trip); safe on any thread.
std::optional<std::string> route_mismatch(const std::string& interface, const std::string& dest);

}  // namespace nodeha::migrate
