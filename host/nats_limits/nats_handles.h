// RAII owners of cnats handles, for every client in the tree (the host's Bus, the CLI, tests'
// raw clients): `Owned<natsMsg, natsMsg_Destroy>` and the usual aliases.
#pragma once

#include <nats/nats.h>

#include <memory>

namespace nodeha::nats {

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    if (p) Fn(p);
  }
};
template <class T, auto Fn>
using Owned = std::unique_ptr<T, Deleter<Fn>>;

using OptionsPtr = Owned<natsOptions, natsOptions_Destroy>;
using ConnectionPtr = Owned<natsConnection, natsConnection_Destroy>;
using SubscriptionPtr = Owned<natsSubscription, natsSubscription_Destroy>;
using MsgPtr = Owned<natsMsg, natsMsg_Destroy>;
using EntryPtr = Owned<kvEntry, kvEntry_Destroy>;
using WatcherPtr = Owned<kvWatcher, kvWatcher_Destroy>;
using StreamInfoPtr = Owned<jsStreamInfo, jsStreamInfo_Destroy>;

}  // namespace nodeha::nats
