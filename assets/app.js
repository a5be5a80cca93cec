// hubbub's own page behaviour, on top of htmx and its WebSocket extension.
// - clears the input as soon as a message is handed over (sent, or queued while offline);
// - shows the connection state, and recovers from closes htmx does not reconnect on;
// - puts the focus back in the input when the server replaces it (after "not sent");
// - keeps the newest message in view unless the reader has scrolled up;
// - shows message times in the reader's time zone.
(function () {
  "use strict";

  function messages() { return document.getElementById("messages"); }

  function nearBottom(list) {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) {
        el.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        el.title = when.toLocaleString();
      }
      el.setAttribute("data-local", "");
    });
  }

  function setStatus(state, text) {
    var status = document.getElementById("status");
    if (status) {
      status.dataset.state = state;
      status.textContent = text;
    }
    document.body.dataset.ws = state;
  }

  var stickToBottom = true;

  document.addEventListener("htmx:ws:after:connection", function () {
    setStatus("open", "connected");
  });
  // htmx reconnects by itself on these close codes (going away, abnormal, restart, …).
  var RECONNECTS = [1001, 1005, 1006, 1011, 1012, 1013, 1014];

  document.addEventListener("htmx:ws:close", function (event) {
    var code = event.detail && event.detail.code;
    if (code == null || RECONNECTS.indexOf(code) >= 0) {
      setStatus("closed", "reconnecting…");
    } else if (code === 1008) {
      // Dropped for falling behind (a sleeping laptop, a slow link): start afresh.
      setStatus("closed", "fell behind; reloading…");
      setTimeout(function () { location.reload(); }, 1500 + Math.random() * 1500);
    } else {
      setStatus("closed", "disconnected; reload the page to continue");
    }
  });

  document.addEventListener("htmx:ws:before:message:incoming", function () {
    var list = messages();
    stickToBottom = !list || nearBottom(list);
  });
  document.addEventListener("htmx:ws:after:message:incoming", function () {
    var input = document.getElementById("text");
    if (input && document.activeElement === document.body) input.focus();
    var list = messages();
    if (!list) return;
    localTimes(list);
    if (stickToBottom) list.scrollTop = list.scrollHeight;
  });

  // Older messages arrive over plain HTTP ("load older"): give them local times too.
  document.addEventListener("htmx:after:swap", function () {
    var list = messages();
    if (list) localTimes(list);
  });

  // Fired when the form's values have been collected, whether the socket is open (sent at
  // once) or not (queued by the extension and sent on reconnect): either way it is handed
  // over, so the input is cleared now and never wiped later.
  document.addEventListener("htmx:ws:before:message:outgoing", function (event) {
    var form = event.target.closest ? event.target.closest("form") : null;
    if (form) form.reset();
    var notice = document.getElementById("notice");
    if (notice) notice.textContent = "";
  });

  document.addEventListener("DOMContentLoaded", function () {
    var list = messages();
    if (list) {
      localTimes(list);
      list.scrollTop = list.scrollHeight;
    }
  });
})();
