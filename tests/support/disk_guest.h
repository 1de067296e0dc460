// Guests that write their own disk, and the images they boot from, for local-disk migration tests.
//
// The guest is a boot sector (tests/fixtures/disk_writer.S, built to NODEHA_DISK_WRITER_BIN) at
// sector 0 of its disk: SeaBIOS boots it, and it stamps sectors 1..limit-1 in order, forever,
// each with a global seq (disk_writes.h). read_disk_writes() then proves from the image alone
// that the disk holds every write up to the newest one it finds.
//
// Paths under /var, /run and /etc/libvirt are the daemon's own (Libvirtd's overlays): the same
// path is a different file for each daemon, as a local disk on two hosts is. So every image is
// made and read inside the daemon's mount namespace (Libvirtd::run_in_mounts). Shared storage
// (a backing file every daemon sees) lives anywhere else, a TempDir say.
//
// Images are made with dd, truncate and qemu-img (qemu-utils); reading one converts it to a raw
// file in the daemon's TempDir (outside the overlays), as large as the disk, removed after.
#pragma once

#include "disk_writes.h"
#include "libvirtd.h"

#include <string>

namespace nodeha::test {

// The writer's 512-byte boot sector.
inline const std::string kDiskWriterBin = NODEHA_DISK_WRITER_BIN;

// A raw image of `size_mib` at `path` in `daemon`'s namespace (directories made; an image there
// already is replaced), the writer at sector 0. `fill_random`: the rest is random, so that
// copying the disk really moves its whole size; else it is sparse zeros. False with the reason in
// `error`.
bool make_raw_disk(Libvirtd& daemon, const std::string& path, int size_mib, bool fill_random,
                   std::string* error = nullptr);

// A qcow2 image of `size_mib` at `top_path` in `daemon`'s namespace over `backing_path` (raw,
// `-b backing -F raw`). The backing file is shared storage (a path outside /var, /run and
// /etc/libvirt, refused otherwise): it is made only when it does not exist yet (raw, the writer
// at sector 0, random after it), so that the destination's top is made over the very file the
// source uses. False with the reason in `error`.
bool make_qcow2_over_backing(Libvirtd& daemon, const std::string& top_path, const std::string& backing_path,
                             int size_mib, std::string* error = nullptr);

// What the writer left on the disk at `path` in `daemon`'s namespace (qcow2 read through its
// backing file), read with `qemu-img convert -U -m 1` (no lock, so the guest may run; one request
// at a time, in LBA order, as check_disk_writes expects of a GuestIs::kRunning read). When the
// image cannot be read: not consistent, qemu-img's error in `problem`.
DiskWrites read_disk_writes(Libvirtd& daemon, const std::string& path, GuestIs guest);

// `qemu-img info -U --output=json` of the image at `path` in `daemon`'s namespace (format,
// virtual-size, backing-filename, ...); empty when qemu-img fails.
std::string image_info(Libvirtd& daemon, const std::string& path);

}  // namespace nodeha::test
