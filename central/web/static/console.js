// The console's only script: follows a request's progress and the live view over
// server-sent events. Pages work without it (the request page refreshes itself instead).
"use strict";

function followRequest(box) {
  if (box.dataset.final === "yes") return;
  const bar = box.querySelector("progress");
  const percent = box.querySelector(".percent");
  const text = box.querySelector(".text");
  const source = new EventSource(box.dataset.stream);
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    box.dataset.phase = p.phase;
    text.textContent = p.text;
    text.classList.toggle("error", p.phase === "failed");
    if (p.percent === null) { bar.removeAttribute("value"); percent.textContent = ""; }
    else { bar.value = p.percent; percent.textContent = p.percent + " %"; }
    if (p.final) { source.close(); if (p.phase === "done") window.location.reload(); }
  });
}

function watchLive(box) {
  const text = box.querySelector(".text");
  const picture = box.querySelector("#live-picture");
  const resume = box.querySelector("#live-resume");
  let source = null;
  function start() {
    resume.hidden = true;
    source = new EventSource(box.dataset.stream);
    source.addEventListener("frame", (e) => {
      const f = JSON.parse(e.data);
      picture.src = f.url;
      picture.hidden = false;
      text.textContent = f.text;
    });
    for (const kind of ["silent", "refused"]) {
      source.addEventListener(kind, (e) => { text.textContent = JSON.parse(e.data).text; });
    }
    source.addEventListener("end", (e) => {
      text.textContent = JSON.parse(e.data).text;
      source.close();
      resume.hidden = false;
    });
  }
  resume.addEventListener("click", start);
  window.addEventListener("pagehide", () => { if (source) source.close(); });
  start();
}

document.addEventListener("DOMContentLoaded", () => {
  const progress = document.getElementById("progress");
  if (progress) followRequest(progress);
  const live = document.getElementById("live");
  if (live) watchLive(live);
});
