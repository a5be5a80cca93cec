// hubbub's own page behaviour, on top of htmx and its WebSocket extension.
// - clears the input once a message has been handed to the socket;
// - shows the connection state;
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
  document.addEventListener("htmx:ws:close", function () {
    setStatus("closed", "reconnecting…");
  });

  document.addEventListener("htmx:ws:before:message:incoming", function () {
    var list = messages();
    stickToBottom = !list || nearBottom(list);
  });
  document.addEventListener("htmx:ws:after:message:incoming", function () {
    var list = messages();
    if (!list) return;
    localTimes(list);
    if (stickToBottom) list.scrollTop = list.scrollHeight;
  });

  document.addEventListener("htmx:ws:after:message:outgoing", function (event) {
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
