#include "answers.h"

namespace nodeha::migrate {

Answers::Ask Answers::ask(const std::string& uuid, const std::string& task, const std::string& reply) {
  std::optional<std::string> answer;
  {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    std::erase_if(entries_, [&](const auto& e) { return e.second.answer && now - e.second.ended > kKeep; });
    auto it = entries_.find(uuid);
    if (it != entries_.end() && it->second.task == task) {
      if (!it->second.answer) {
        it->second.replies.push_back(reply);
        return Ask::Joined;
      }
      answer = it->second.answer;
    } else if (it != entries_.end() && !it->second.answer) {
      return Ask::Busy;
    } else {
      entries_[uuid] = Entry{task, {reply}, std::nullopt, {}};
      return Ask::Start;
    }
  }
  (void)host_.respond(reply, *answer);
  return Ask::Answered;
}

void Answers::finish(const std::string& uuid, const std::string& body, bool succeeded) {
  std::vector<std::string> replies;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(uuid);
    if (it == entries_.end()) return;
    replies.swap(it->second.replies);
    if (succeeded) {
      it->second.answer = body;
      it->second.ended = Clock::now();
    } else {
      entries_.erase(it);
    }
  }
  for (const auto& r : replies) (void)host_.respond(r, body);  // the earlier asks' inboxes may be gone: fine
}

void Answers::forget(const std::string& uuid) {
  std::lock_guard lock(mu_);
  entries_.erase(uuid);
}

}  // namespace nodeha::migrate
