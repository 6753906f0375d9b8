// redeploy's dashboard: the little it needs JavaScript for. Every page reads
// the same without it (times then show in UTC).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Times in the viewer's time zone.
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when)) {
      el.title = el.getAttribute("datetime");
      el.textContent = when.toLocaleString();
    }
  }
  // Copy buttons: copy the named field's value.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      if (!field) return;
      try {
        await navigator.clipboard.writeText(field.value);
        button.textContent = "Copied";
      } catch {
        field.select();
        button.textContent = "Press Ctrl+C";
      }
    });
  }
});

// The deploy page of a deploy not over: its log as it is written (server-
// sent events; the browser resumes from the last byte after a cut).
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (!log || !log.dataset.follow || !window.EventSource) return;
  const state = document.getElementById("state");
  const live = document.getElementById("live");
  const events = new EventSource(log.dataset.follow);
  events.addEventListener("log", (e) => {
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(document.createTextNode(e.data));
    if (atEnd) log.scrollTop = log.scrollHeight;
  });
  events.addEventListener("state", (e) => {
    if (state) {
      state.textContent = e.data;
      state.className = "state state-" + e.data;
    }
  });
  events.addEventListener("end", (e) => {
    events.close();
    if (live) live.textContent = "The deploy ended: " + e.data + ".";
    // Over: nothing left to cancel (reload for its exit status and timing).
    const cancel = document.getElementById("cancel-form");
    if (cancel) cancel.remove();
  });
});
