/* The warning before an idle sign-out (partials/session_timeout.html; WCAG 2.2.1).
   portal.js loads this file on pages that carry the warning. It asks the server how
   long is left (GET data-url, which does not count as activity), opens the warning two
   minutes before the end with a countdown, and "Stay signed in" (or Escape) posts to
   the same URL; "Sign out" posts to data-sign-out-url. When the server says the session is over, it goes to data-ended-url
   with the page as `next`. The server's answer decides every step, so activity in other
   tabs, and a computer that slept, are counted right. No framework; ES5. */
(function () {
  "use strict";

  var WARN_SECONDS = 120;
  var idle = { box: null, timer: null, tick: null, due: 0, returnFocus: null };

  function askTimeLeft(method, box, done) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, box.getAttribute("data-url"));
    xhr.setRequestHeader("Accept", "application/json");
    if (method === "POST") { xhr.setRequestHeader("X-CSRFToken", csrfToken()); }
    xhr.onload = function () {
      var left = null;
      if (xhr.status === 200) {
        try { left = JSON.parse(xhr.responseText).left; } catch (e) { left = null; }
      }
      done(typeof left === "number" ? left : null);
    };
    xhr.onerror = function () { done(null); };
    xhr.send();
  }

  // The page's CSRF token, from the header htmx sends (base.html): the warning's markup
  // is the same for everybody, so it carries none.
  function csrfToken() {
    var holder = document.querySelector("[hx-headers]");
    try { return JSON.parse(holder.getAttribute("hx-headers"))["x-csrftoken"] || ""; } catch (e) { return ""; }
  }

  function signOut(box) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = box.getAttribute("data-sign-out-url");
    form.setAttribute("hx-boost", "false");
    var token = document.createElement("input");
    token.type = "hidden";
    token.name = "_csrf_token";
    token.value = csrfToken();
    form.appendChild(token);
    document.body.appendChild(form);
    form.submit();
  }

  function scheduleCheck(seconds) {
    clearTimeout(idle.timer);
    idle.due = Date.now() + seconds * 1000;
    idle.timer = setTimeout(checkTimeLeft, Math.max(0, seconds) * 1000);
  }

  function checkTimeLeft() {
    var box = idle.box;
    if (!box) { return; }
    askTimeLeft("GET", box, function (left) {
      if (box !== idle.box) { return; }  // another page has come meanwhile
      if (left === null) { scheduleCheck(30); return; }  // no answer: ask again soon
      if (left <= 0) { sessionEnded(box); return; }
      if (left > WARN_SECONDS + 5) { closeWarning(box); scheduleCheck(left - WARN_SECONDS); return; }
      openWarning(box, left);
    });
  }

  function openWarning(box, left) {
    var ends = Date.now() + left * 1000;
    var shown = box.querySelector("[data-time-left]");
    clearTimeout(idle.timer);
    clearInterval(idle.tick);
    if (box.hidden) {
      idle.returnFocus = document.activeElement;
      box.hidden = false;
      box.querySelector("[role=alertdialog]").focus();
    }
    function show() {
      var s = Math.max(0, Math.round((ends - Date.now()) / 1000));
      shown.textContent = Math.floor(s / 60) + ":" + (s % 60 < 10 ? "0" : "") + (s % 60);
      if (s <= 0) { clearInterval(idle.tick); checkTimeLeft(); }
    }
    show();
    idle.tick = setInterval(show, 1000);
  }

  function closeWarning(box) {
    clearInterval(idle.tick);
    if (box.hidden) { return; }
    box.hidden = true;
    var back = idle.returnFocus;
    if (!back || !document.body.contains(back) || back === document.body) { back = document.getElementById("main"); }
    if (back) { back.focus(); }
  }

  function sessionEnded(box) {
    clearTimeout(idle.timer);
    clearInterval(idle.tick);
    idle.box = null;
    location.assign(box.getAttribute("data-ended-url") + "&next=" +
      encodeURIComponent(location.pathname + location.search));
  }

  function stayOn(box) {
    askTimeLeft("POST", box, function (left) {
      if (box !== idle.box || left === null) { return; }  // no answer: the warning stays
      if (left <= 0) { sessionEnded(box); return; }
      // Near a session's fixed end (12 hours; staff 8) staying cannot add time.
      if (left <= WARN_SECONDS + 5) { openWarning(box, left); return; }
      closeWarning(box);
      scheduleCheck(left - WARN_SECONDS);
    });
  }

  function setupIdleWarning() {
    clearTimeout(idle.timer);
    clearInterval(idle.tick);
    var box = document.querySelector("[data-session-timeout]");
    idle.box = box;
    if (!box || !window.XMLHttpRequest || !window.JSON) { return; }
    var dialog = box.querySelector("[role=alertdialog]");
    box.querySelector("[data-session-keep]").addEventListener("click", function () { stayOn(box); });
    box.querySelector("[data-session-sign-out]").addEventListener("click", function () { signOut(box); });
    dialog.addEventListener("keydown", function (event) {
      if (event.key === "Escape" || event.key === "Esc") { event.preventDefault(); stayOn(box); }
    });
    scheduleCheck(+box.getAttribute("data-first-check"));
    box.setAttribute("data-ready", "");  // counting from now (tests wait for it)
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Tab" && idle.box && !idle.box.hidden) {
      window.portalKeepTabInside(idle.box.querySelector("[role=alertdialog]"), event);  // portal.js
    }
  });
  // A hidden tab's timers may run late: ask as soon as it is shown again.
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && idle.box && (Date.now() >= idle.due || !idle.box.hidden)) { checkTimeLeft(); }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && idle.box) { checkTimeLeft(); }
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.boosted) { setupIdleWarning(); }
  });
  setupIdleWarning();
})();
