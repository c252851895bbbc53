// jgate console: our own small script (no third-party code). Progressive: every page works
// without it; it adds copy buttons, confirmations, auto-submitting matrix selects and the
// audit's live updates.
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (b) {
      b.addEventListener("click", function () {
        var el = document.getElementById(b.getAttribute("data-copy"));
        if (!el || !navigator.clipboard) { return; }
        navigator.clipboard.writeText(el.textContent).then(function () {
          var old = b.textContent;
          b.textContent = "Copied";
          setTimeout(function () { b.textContent = old; }, 1500);
        });
      });
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
  }

  function autoSubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { if (s.form) { s.form.requestSubmit(); } });
      // The Set button is for keyboards and scripts-off; with the script the select suffices.
      var b = s.form && s.form.querySelector("button");
      if (b) { b.classList.add("js-hidden"); }
    });
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) {
      var span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function liveAudit() {
    var table = document.getElementById("audit-table");
    if (!table || !window.EventSource) { return; }
    var state = document.getElementById("live-state");
    var body = table.querySelector("tbody");
    var max = 500;
    var source = new EventSource(table.getAttribute("data-events"));
    source.addEventListener("record", function (ev) {
      var r;
      try { r = JSON.parse(ev.data); } catch (e) { return; }
      var tr = document.createElement("tr");
      tr.className = (r.denied ? "denied " : "") + "mark-" + String(r.mark).toLowerCase() + " fresh";
      tr.appendChild(cell(String(r.seq)));
      tr.appendChild(cell(r.time));
      tr.appendChild(cell(r.mark, "mark"));
      tr.appendChild(cell(r.sentence));
      body.insertBefore(tr, body.firstChild);
      while (body.rows.length > max) { body.deleteRow(body.rows.length - 1); }
      var empty = document.getElementById("audit-empty");
      if (empty) { empty.remove(); }
    });
    source.addEventListener("ended", function () {
      source.close();
      if (state) { state.textContent = "Live updates stopped: your session has ended. Reload to log in again."; }
    });
    source.onerror = function () {
      if (state) { state.textContent = "Live updates paused: reconnecting…"; }
    };
    source.onopen = function () {
      if (state) { state.textContent = "Live: new records appear at the top as they are written."; }
    };
  }

  onReady(function () {
    copyButtons();
    confirmations();
    autoSubmit();
    liveAudit();
  });
})();
