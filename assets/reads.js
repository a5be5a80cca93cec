// Unread counts, the "New messages" line, and telling the server what has been read.
// - The server says, when the socket opens, how many messages are unread in each room the
//   reader has read before, and each room's message counter at that moment (#unread);
//   then, at most twice a second, every room's counter (#activity), and, when the reader
//   reads a room on another tab or device, that room's count anew (#unread-news). A room's
//   unread count is the count it was told plus how far its counter moved since; the room
//   list shows it in each room's link ("3 unread" to a screen reader).
// - Opened with a mark (data-read: the newest message read here before), the page draws
//   a "New messages" line above the first message after it that is not the reader's own,
//   and starts there instead of at the bottom.
// - While the tab is visible, the newest message scrolled into view is reported as read
//   (#read-form, at most once a second), so the mark follows the reader across tabs and
//   devices.
// - Messages that mention the reader (a .mention whose data-mention is the page's
//   data-me-key) are marked; each room shows how many unread ones mention them, live
//   (#mention-news for rooms the page does not show).
// - Typing "@" in the composer offers the people in the room whose names start so (an htmx
//   request, GET /rooms/{room}/names): Up and Down move, Enter or Tab picks, Escape closes.
// - Browser notifications, once the reader turns them on with the sidebar's button (the
//   Notification API; nothing goes to any push service): while the tab is hidden, for what
//   each room's setting asks (data-notify here, the snapshot's for other rooms): every
//   message, mentions (the default), or nothing.
(function () {
  "use strict";

  var SEND_EVERY_MS = 1000;
  var told = {};     // room -> { unread, counter, mentions, notify }: as told, and the counter then
  var counters = {}; // room -> the room's counter, as last heard
  var seen = 0;      // the newest message id seen on this page
  var sent = 0;      // the newest id reported
  var sendTimer = null;
  var lineShown = false;

  function layout() { return document.querySelector(".layout[data-room]"); }
  function list() { return document.getElementById("messages"); }
  function room() { var l = layout(); return l ? l.dataset.room : null; }
  function mark() {
    var l = layout();
    var read = l && l.dataset.read ? parseInt(l.dataset.read, 10) : NaN;
    return isNaN(read) ? null : read;
  }
  function idOf(article) { return parseInt(article.id.replace(/^msg-/, ""), 10); }
  function articles() {
    var l = list();
    return l ? l.querySelectorAll("article[id^='msg-']") : [];
  }

  // "general:3:12 design:0:4" into calls of fn(["general", "3", "12"]).
  function each(data, fn) {
    (data || "").split(" ").forEach(function (item) {
      if (item) fn(item.split(":"));
    });
  }

  function mentionsIn(name) {
    var t = told[name];
    return t ? t.mentions : 0;
  }

  function unreadIn(name) {
    var t = told[name];
    if (!t) return 0;
    var now = counters[name] === undefined ? t.counter : counters[name];
    return t.unread + Math.max(0, now - t.counter);
  }

  function hidden(text) {
    var span = document.createElement("span");
    span.className = "visually-hidden";
    span.textContent = text;
    return span;
  }

  function showCounts() {
    var here = room();
    document.querySelectorAll("#rooms a[data-room]").forEach(function (link) {
      var name = link.dataset.room;
      var n = name === here ? 0 : unreadIn(name);
      var m = name === here ? 0 : mentionsIn(name);
      var at = link.querySelector(".mentions");
      if (m <= 0) {
        if (at) at.remove();
      } else {
        if (!at) {
          at = document.createElement("span");
          at.className = "mentions";
          link.appendChild(at);
        }
        if (at.dataset.n !== String(m)) {
          at.dataset.n = String(m);
          at.textContent = "";
          at.appendChild(hidden(", "));
          at.appendChild(document.createTextNode("@" + m));
          at.appendChild(hidden(m === 1 ? " mention" : " mentions"));
        }
      }
      var badge = link.querySelector(".unread");
      if (n <= 0) {
        if (badge) badge.remove();
        return;
      }
      if (!badge) {
        badge = document.createElement("span");
        badge.className = "unread";
        link.insertBefore(badge, link.querySelector(".mentions"));
      }
      var text = n >= 1000 ? "999+" : String(n);
      if (badge.dataset.n === text) return;
      badge.dataset.n = text;
      badge.textContent = "";
      // Read as part of the link: "#general, 3 unread".
      badge.appendChild(hidden(", "));
      badge.appendChild(document.createTextNode(text));
      badge.appendChild(hidden(" unread"));
    });
  }

  // What the last frame carried: each element is read once, then emptied.
  function takeNews() {
    var full = document.getElementById("unread");
    if (full && full.hasAttribute("data-unread")) {
      told = {};
      each(full.getAttribute("data-unread"), function (p) {
        told[p[0]] = line(p, null);
        counters[p[0]] = told[p[0]].counter;
      });
      full.removeAttribute("data-unread");
    }
    var activity = document.getElementById("activity");
    if (activity && activity.hasAttribute("data-counts")) {
      each(activity.getAttribute("data-counts"), function (p) {
        var before = unreadIn(p[0]);
        counters[p[0]] = parseInt(p[1], 10) || 0;
        var t = told[p[0]];
        if (t && t.notify === "all" && p[0] !== room() && unreadIn(p[0]) > before) {
          notify("New messages in #" + p[0], unreadIn(p[0]) + " unread", p[0]);
        }
      });
      activity.removeAttribute("data-counts");
    }
    var news = document.getElementById("unread-news");
    if (news && news.hasAttribute("data-unread")) {
      each(news.getAttribute("data-unread"), function (p) {
        told[p[0]] = line(p, told[p[0]]);
      });
      news.removeAttribute("data-unread");
    }
    var named = document.getElementById("mention-news");
    if (named && named.hasAttribute("data-room")) {
      var where = named.getAttribute("data-room");
      var t = told[where] || (told[where] = { unread: 0, counter: counters[where] || 0, mentions: 0, notify: "mentions" });
      t.mentions += 1;
      if (where !== room() && t.notify !== "none") {
        notify(named.getAttribute("data-author") + " mentioned you in #" + where,
               named.getAttribute("data-text") || "", where);
      }
      named.removeAttribute("data-room");
    }
    showCounts();
  }

  // One room's line: "room:unread:counter:mentions:notify"; an empty notify keeps `was`'s.
  function line(p, was) {
    return {
      unread: parseInt(p[1], 10) || 0,
      counter: parseInt(p[2], 10) || 0,
      mentions: parseInt(p[3], 10) || 0,
      notify: p[4] || (was ? was.notify : "mentions")
    };
  }

  // Messages that mention the reader: marked once each (a class, and words for screen
  // readers).
  function markMentions() {
    var l = layout();
    var key = l ? l.dataset.meKey : "";
    if (!key) return;
    articles().forEach(function (article) {
      if (article.dataset.mentionChecked) return;
      article.dataset.mentionChecked = "1";
      var spans = article.querySelectorAll(".mention[data-mention]");
      for (var i = 0; i < spans.length; i++) {
        if (spans[i].getAttribute("data-mention") === key) {
          article.classList.add("mentions-me");
          var header = article.querySelector("header");
          if (header) header.appendChild(hidden(" (mentions you)"));
          return;
        }
      }
    });
  }

  // Browser notifications: on only once the reader turned them on here and the browser
  // allows them; only while the tab is hidden.
  var NOTIFY_KEY = "hubbub-notifications";
  function notificationsOn() {
    return "Notification" in window && Notification.permission === "granted" &&
      localStorage.getItem(NOTIFY_KEY) === "on";
  }
  function notify(title, body, where) {
    if (!notificationsOn() || document.visibilityState === "visible") return;
    var shown = new Notification(title, { body: body, tag: "hubbub-" + where });
    shown.onclick = function () {
      window.focus();
      if (where !== room()) location.href = "/rooms/" + where;
      shown.close();
    };
  }
  function showNotificationState() {
    var button = document.getElementById("notifications-on");
    var state = document.getElementById("notifications-state");
    if (!button || !state) return;
    if (!("Notification" in window)) {
      button.hidden = true;
      state.textContent = "";
      return;
    }
    var on = notificationsOn();
    button.hidden = on || Notification.permission === "denied";
    state.textContent = on ? "Browser notifications are on." :
      Notification.permission === "denied" ? "Notifications are blocked in this browser's settings." : "";
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("#notifications-on") : null;
    if (!button) return;
    Notification.requestPermission().then(function (answer) {
      if (answer === "granted") localStorage.setItem(NOTIFY_KEY, "on");
      showNotificationState();
    });
  });
  // What this room's setting asks for, for messages arriving here while hidden.
  function notifyHere(marked, added) {
    var l = layout();
    var level = l ? l.dataset.notify : "mentions";
    if (level === "none" || document.visibilityState === "visible") return;
    var me = l.dataset.me;
    var news = level === "all" ? added.filter(function (a) { return a.dataset.author !== me; }) : marked;
    if (news.length === 0) return;
    var last = news[news.length - 1];
    var author = last.querySelector(".author");
    var text = last.querySelector(".text");
    notify((author ? author.textContent : "Someone") + (level === "all" && marked.indexOf(last) < 0 ? " in #" : " mentioned you in #") + room(),
           text ? text.textContent.slice(0, 140) : "", room());
  }

  // The line goes above the first message after the mark that is not the reader's own;
  // it is put back wherever a swap (a reconnect's history, older messages) moved things.
  function placeLine() {
    var read = mark();
    var l = list();
    if (read === null || !l) return null;
    var me = layout().dataset.me;
    var old = document.getElementById("new-line");
    var first = null;
    var all = articles();
    for (var i = 0; i < all.length; i++) {
      if (idOf(all[i]) > read && all[i].dataset.author !== me) { first = all[i]; break; }
    }
    if (!first) {
      if (old) old.remove();
      return null;
    }
    if (old && old.nextElementSibling === first) return old;
    if (old) old.remove();
    var line = document.createElement("div");
    line.id = "new-line";
    line.className = "new-line";
    line.setAttribute("role", "separator");
    line.setAttribute("aria-label", "New messages");
    line.textContent = "New messages";
    first.parentNode.insertBefore(line, first);
    return line;
  }

  // The first time the line is there, the log starts at it rather than at the bottom
  // (unless the page was opened at a message).
  function startAtLine() {
    var line = placeLine();
    if (!line || lineShown || (layout() && layout().dataset.around)) return;
    lineShown = true;
    var l = list();
    l.scrollTop = Math.max(0, line.offsetTop - l.offsetTop - 8);
  }

  // The newest message whose top is in view, while the tab is visible.
  function noteSeen() {
    var l = list();
    if (!l || document.visibilityState !== "visible") return;
    var bottom = l.getBoundingClientRect().bottom;
    var all = articles();
    for (var i = all.length - 1; i >= 0; i--) {
      var box = all[i].getBoundingClientRect();
      if (box.top < bottom - 4 && box.bottom > l.getBoundingClientRect().top) {
        seen = Math.max(seen, idOf(all[i]));
        break;
      }
    }
    if (seen > sent && sendTimer === null) {
      sendTimer = setTimeout(report, sent === 0 ? 0 : SEND_EVERY_MS);
    }
  }

  function report() {
    sendTimer = null;
    var form = document.getElementById("read-form");
    if (!form || seen <= sent || document.body.dataset.ws !== "open") return;
    sent = seen;
    form.querySelector('input[name="id"]').value = String(seen);
    form.requestSubmit();
  }

  var scrollQueued = false;
  document.addEventListener("scroll", function (event) {
    if (event.target !== list() || scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(function () { scrollQueued = false; noteSeen(); });
  }, true);
  document.addEventListener("visibilitychange", noteSeen);
  window.addEventListener("focus", noteSeen);

  // "@" in the composer: who it could name, from the server, in a list box the composer
  // points at (aria-activedescendant), so a screen reader follows the arrows.
  var mentionAt = -1;
  var active = 0;
  var asked = null;
  function composer() { return document.getElementById("text"); }
  function mentionBox() { return document.getElementById("mention-box"); }
  function options() {
    var box = mentionBox();
    return box ? Array.prototype.slice.call(box.querySelectorAll('[role="option"]')) : [];
  }
  function closeMentions() {
    mentionAt = -1;
    asked = null;
    var box = mentionBox();
    if (box) box.textContent = "";
    var input = composer();
    if (input) input.removeAttribute("aria-activedescendant");
  }
  // The "@name" being typed just before the caret, if any.
  function typedMention(input) {
    var before = input.value.slice(0, input.selectionStart);
    var found = /(^|[^\p{L}\p{N}_])@([\p{L}\p{N}_.-]{0,32})$/u.exec(before);
    return found ? { at: before.length - found[2].length - 1, text: found[2] } : null;
  }
  function showActive() {
    var all = options();
    var input = composer();
    if (all.length === 0) {
      if (input) input.removeAttribute("aria-activedescendant");
      return;
    }
    active = (active + all.length) % all.length;
    all.forEach(function (option, i) {
      option.setAttribute("aria-selected", i === active ? "true" : "false");
    });
    if (input) input.setAttribute("aria-activedescendant", all[active].id);
  }
  function pickMention(option) {
    var input = composer();
    if (!input || mentionAt < 0) return;
    var insert = option.getAttribute("data-insert") + " ";
    var end = input.selectionStart;
    input.value = input.value.slice(0, mentionAt) + insert + input.value.slice(end);
    var caret = mentionAt + insert.length;
    input.setSelectionRange(caret, caret);
    closeMentions();
    input.focus();
  }
  document.addEventListener("input", function (event) {
    if (!event.target || event.target.id !== "text" || !window.htmx) return;
    var typed = typedMention(event.target);
    if (!typed) { closeMentions(); return; }
    mentionAt = typed.at;
    if (typed.text === asked) return;
    asked = typed.text;
    htmx.ajax("GET", "/rooms/" + encodeURIComponent(room()) + "/names?q=" + encodeURIComponent(typed.text),
      { target: "#mention-box", swap: "innerHTML" })
      .then(function () { active = 0; showActive(); }, function () {});
  });
  // On the window, capturing: before app.js's keys (its Enter sends, its Up edits).
  window.addEventListener("keydown", function (event) {
    if (!event.target || event.target.id !== "text" || mentionAt < 0 || options().length === 0) return;
    var handled = true;
    if (event.key === "ArrowDown") { active += 1; showActive(); }
    else if (event.key === "ArrowUp") { active -= 1; showActive(); }
    else if (event.key === "Enter" || event.key === "Tab") pickMention(options()[active]);
    else if (event.key === "Escape") closeMentions();
    else handled = false;
    if (handled) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("mousedown", function (event) {
    var option = event.target.closest ? event.target.closest('#mention-box [role="option"]') : null;
    if (!option) return;
    event.preventDefault();
    pickMention(option);
  });
  document.addEventListener("htmx:ws:before:message:outgoing", function (event) {
    if (event.target && event.target.id === "composer") closeMentions();
  });

  // The messages shown before a frame, to tell what it added.
  var before = {};
  var historyIn = false;
  document.addEventListener("htmx:ws:before:message:incoming", function (event) {
    var data = event.detail && event.detail.message && event.detail.message.data;
    historyIn = typeof data === "string" && data.indexOf('id="messages" hx-swap-oob="innerHTML"') >= 0;
    before = {};
    articles().forEach(function (a) { before[a.id] = true; });
  });
  document.addEventListener("htmx:ws:after:message:incoming", function () {
    takeNews();
    startAtLine();
    markMentions();
    // New here: articles not shown before the frame, unless a whole history came (a
    // connect); those among them that mention the reader.
    var added = [];
    articles().forEach(function (a) {
      if (!before[a.id]) added.push(a);
    });
    var marked = added.filter(function (a) { return a.classList.contains("mentions-me"); });
    if (!historyIn) notifyHere(marked, added);
    noteSeen();
  });
  // The select's own change: the page keeps what it asked for.
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "notify" && layout()) {
      layout().dataset.notify = event.target.value;
    }
  });
  // Older and newer pages arrive over HTTP.
  document.addEventListener("htmx:after:swap", function () {
    placeLine();
    markMentions();
    noteSeen();
  });
  // The socket came back: anything seen meanwhile goes out now.
  document.addEventListener("htmx:ws:after:connection", function () {
    sent = 0;
    noteSeen();
  });
  document.addEventListener("DOMContentLoaded", function () {
    startAtLine();
    markMentions();
    showCounts();
    showNotificationState();
  });
})();
