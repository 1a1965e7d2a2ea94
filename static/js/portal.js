/* Small enhancements on top of pages that work without JavaScript. No framework.
   - "Show password" buttons (hidden until this script runs).
   - Keeps aria-invalid on an input in step with its inline message after htmx swaps.
   - Closes a message dialog in place and returns focus to the page; keeps Tab inside it.
   - After a boosted page change (hx-boost on <body>): an error page is shown like any
     page, and focus goes where a new page should put it: the element marked autofocus
     (an error summary, a success message, a dialog), else the page's h1.
   - Loads session_timeout.js on pages that warn before an idle sign-out. */
(function () {
  "use strict";

  function setupShowPassword(root) {
    var buttons = root.querySelectorAll("[data-show-password]");
    Array.prototype.forEach.call(buttons, function (button) {
      if (button.dataset.ready) { return; }
      var input = document.getElementById(button.getAttribute("data-show-password"));
      if (!input) { return; }
      button.dataset.ready = "1";
      button.hidden = false;
      button.addEventListener("click", function () {
        var showing = input.type === "text";
        input.type = showing ? "password" : "text";
        button.setAttribute("aria-pressed", showing ? "false" : "true");
      });
    });
  }

  function setupDialogs(root) {
    var closers = root.querySelectorAll("[data-dialog-close]");
    Array.prototype.forEach.call(closers, function (closer) {
      closer.addEventListener("click", function (event) {
        var backdrop = closer.closest("[data-dialog]");
        if (!backdrop) { return; }
        event.preventDefault();
        backdrop.parentNode.removeChild(backdrop);
        // Leave no one-time code in the address bar (or in history) once it is done.
        if (window.history && history.replaceState && /[?&](verificationcode|token)=/.test(location.search)) {
          history.replaceState(null, "", closer.getAttribute("href"));
        }
        var main = document.getElementById("main");
        if (main) { main.focus(); }
      });
    });
    var dialog = root.querySelector("[data-dialog] [role=dialog]");
    if (dialog) {
      dialog.setAttribute("aria-modal", "true");
      dialog.focus();
      dialog.addEventListener("keydown", function (event) {
        if (event.key === "Escape") {
          var close = dialog.querySelector("[data-dialog-close]");
          if (close) { close.click(); }
        }
      });
      document.addEventListener("keydown", function (event) {
        if (event.key === "Tab" && document.body.contains(dialog)) { keepTabInside(dialog, event); }
      });
    }
  }

  // A modal dialog keeps Tab and Shift+Tab inside itself while it is open (also for
  // session_timeout.js, as window.portalKeepTabInside).
  function keepTabInside(dialog, event) {
    var stops = dialog.querySelectorAll("a[href], button:not([disabled]), input:not([type=hidden]):not([disabled])");
    if (!stops.length) { return; }
    var first = stops[0], last = stops[stops.length - 1];
    var inside = dialog.contains(document.activeElement) && document.activeElement !== dialog;
    if (!inside || (event.shiftKey && document.activeElement === first) ||
        (!event.shiftKey && document.activeElement === last)) {
      event.preventDefault();
      (event.shiftKey ? last : first).focus();
    }
  }
  window.portalKeepTabInside = keepTabInside;

  // The warning before an idle sign-out lives in its own file, fetched only by pages
  // that carry it (partials/session_timeout.html names it), so the others do not pay
  // for it. Once loaded, it follows boosted page changes by itself.
  var idleScript = false;
  function loadIdleWarning() {
    var box = document.querySelector("[data-session-timeout]");
    if (idleScript || !box) { return; }
    idleScript = true;
    var script = document.createElement("script");
    script.src = box.getAttribute("data-script");
    document.head.appendChild(script);
  }

  function syncInvalid(slot) {
    if (!slot || !slot.id || slot.id.slice(-6) !== "-error") { return; }
    // After an out-of-band swap the event names the replaced (old) slot: read the live one.
    slot = document.getElementById(slot.id) || slot;
    var name = slot.id.slice(0, -6);
    var input = document.getElementById(name);
    var group = document.getElementById(name + "-group");
    var hasError = slot.textContent.trim() !== "";
    if (input && input.tagName === "INPUT") {
      if (hasError) { input.setAttribute("aria-invalid", "true"); }
      else { input.removeAttribute("aria-invalid"); }
    }
    if (group) { group.classList.toggle("field--error", hasError); }
  }

  function focusNewPage() {
    var target = document.querySelector("#main [autofocus]") || document.querySelector("#main h1");
    if (!target) { target = document.getElementById("main"); }
    if (!target) { return; }
    if (!target.hasAttribute("tabindex")) { target.setAttribute("tabindex", "-1"); }
    target.focus();
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    // A boosted link or form is a page change: its 4xx/5xx answer is a whole friendly
    // page (not found, too many tries, form expired), so show it. Targeted swaps (a
    // field's message) keep htmx-config's rule: only 2xx and 422 are swapped.
    if (event.detail.boosted && event.detail.xhr.status >= 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    if (!event.detail.boosted) { return; }
    setupDialogs(document);
    loadIdleWarning();
    focusNewPage();
  });

  document.addEventListener("DOMContentLoaded", function () {
    setupShowPassword(document);
    setupDialogs(document);
    loadIdleWarning();
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    syncInvalid(event.detail.target);
    setupShowPassword(document);
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    syncInvalid(event.detail.target);
  });
})();
