#include "guards.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

namespace nodeha::vms {

std::unique_ptr<Busy::Guard> Busy::hold(const std::string& uuid) {
  std::lock_guard lock(mu_);
  ++busy_[uuid];
  touched_.insert(uuid);
  return std::make_unique<Guard>(this, uuid);
}

void Busy::end(const std::string& uuid) {
  std::lock_guard lock(mu_);
  if (--busy_[uuid] <= 0) busy_.erase(uuid);
}

void Busy::new_round() {
  std::lock_guard lock(mu_);
  touched_.clear();
  for (const auto& [uuid, n] : busy_) touched_.insert(uuid);
}

bool Busy::touched(const std::string& uuid) const {
  std::lock_guard lock(mu_);
  return touched_.count(uuid) > 0;
}

Held::Held(std::string path) : path_(std::move(path)) {
  std::ifstream in(path_);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_array()) return;  // absent or torn: nothing is held
  for (const auto& u : j)
    if (u.is_string()) uuids_.insert(u.get<std::string>());
}

bool Held::add(const std::string& uuid) {
  std::lock_guard lock(mu_);
  return !uuids_.insert(uuid).second || save();
}

bool Held::remove(const std::string& uuid) {
  std::lock_guard lock(mu_);
  return !uuids_.erase(uuid) || save();
}

bool Held::contains(const std::string& uuid) const {
  std::lock_guard lock(mu_);
  return uuids_.count(uuid) > 0;
}

std::set<std::string> Held::all() const {
  std::lock_guard lock(mu_);
  return uuids_;
}

bool Held::save() const {
  // Write aside, then rename: a crash leaves the old set or the new one, never half of one.
  std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << nlohmann::json(uuids_).dump() << "\n";
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path_.c_str()) == 0;
}

}  // namespace nodeha::vms
