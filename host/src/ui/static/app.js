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
