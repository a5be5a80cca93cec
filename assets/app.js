// hubbub's own page behaviour, on top of htmx and its WebSocket extension.
// - clears the input as soon as a message is handed over (sent, or queued while offline);
// - shows the connection state, and recovers from closes htmx does not reconnect on;
// - puts the focus back in the input when the server replaces it (after "not sent");
// - marks the current room in the room list, counts unread messages in the tab title while
//   the tab is hidden, keeps the socket open in background tabs;
// - keeps the newest message in view unless the reader has scrolled up;
// - shows message times in the reader's time zone;
// - on narrow screens, folds the room list and the people online behind a button, and
//   closes it again with Escape;
// - keeps screen readers to new messages: a whole history (on connect, or "load older")
//   is put in while the log is marked busy and not live, so it is not read out;
// - offers "Edit" and "Delete" on your own messages, and "Delete" on every message to a
//   moderator (the server decides; this only shows the buttons), edits in place (Enter saves, Escape cancels, Up in an empty composer
//   edits your last message), asks before deleting; offers "React" on every message and
//   toggles reactions, showing yours pressed; "Reply" shows what you answer above the
//   composer and sends its id with your message; a quote's link loads older messages
//   until the one it quotes is there;
// - gives each message the composer sends an id of its own, so a resend is stored once;
// - opened at a message (?around=ID, where a search result leads), scrolls to it and
//   marks it, and keeps the messages around it when the socket's history arrives: "load
//   newer" fills in between them and the recent ones, where live messages still arrive.
(function () {
  "use strict";

  function messages() { return document.getElementById("messages"); }

  function nearBottom(list) {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function localTimes(root, withDate) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) {
        el.textContent = withDate
          ? when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })
          : when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        el.title = when.toLocaleString();
      }
      el.setAttribute("data-local", "");
    });
  }

  function setStatus(state, text) {
    var status = document.getElementById("status");
    // The status is a live region: said once when it changes, not again on every retry.
    if (status && status.textContent !== text) {
      status.dataset.state = state;
      status.textContent = text;
    }
    document.body.dataset.ws = state;
  }

  // This script runs before htmx (see base.html), so its listeners are in place before the
  // socket can open. Once htmx starts: keep the socket open in background tabs, so a chat
  // keeps receiving (and counting unread messages) while you look elsewhere.
  document.addEventListener("htmx:before:init", function configure() {
    document.removeEventListener("htmx:before:init", configure);
    if (window.htmx) {
      htmx.config.ws = Object.assign({}, htmx.config.ws, { pauseOnBackground: false });
    }
  });

  // The room list is the same for every page; mark this page's room in it.
  function markCurrentRoom() {
    var layout = document.querySelector(".layout[data-room]");
    if (!layout) return;
    document.querySelectorAll("#rooms a[data-room]").forEach(function (link) {
      if (link.dataset.room === layout.dataset.room) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    });
  }

  // While the tab is hidden, count new messages in its title.
  var baseTitle = document.title;
  var unread = 0;
  function showUnread() {
    document.title = unread > 0 ? "(" + unread + ") " + baseTitle : baseTitle;
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      unread = 0;
      showUnread();
    }
  });

  // A screen reader announces what is added to the log (role="log"): new messages, once.
  // A whole history is not news; while it goes in, the log is busy and silent. Two things
  // can hold it so at once (a history replaced on connect, older messages loading), and it
  // is live again only when neither does.
  var holds = { history: false, older: false };
  function quiet(list, reason, on) {
    holds[reason] = on;
    if (!list) return;
    if (holds.history || holds.older) {
      list.setAttribute("aria-busy", "true");
      list.setAttribute("aria-live", "off");
    } else {
      list.removeAttribute("aria-busy");
      list.setAttribute("aria-live", "polite");
    }
  }
  // The browser tells screen readers of a change a moment after it is made, not at once:
  // the log is made live again only well after the history went in, or that history
  // would be read out after all. A message arriving within that moment is not announced.
  var SETTLE_MS = 300;
  function releaseLater(reason) {
    setTimeout(function () { quiet(messages(), reason, false); }, SETTLE_MS);
  }
  function replacesHistory(detail) {
    var data = detail && detail.message && detail.message.data;
    return typeof data === "string" && data.indexOf('id="messages" hx-swap-oob="innerHTML"') >= 0;
  }
  // "Load older" replaces its own element, so the events after the swap fire on an
  // element no longer in the page and never reach the document: the log is made live
  // again on whichever event does arrive first once that element is gone (a live message
  // swapped in meanwhile ends nothing), or after a while in any case.
  var loadingOlder = null;
  var olderLink = null;
  function olderDone(event) {
    if (loadingOlder === null) return;
    var timedOut = !event;
    if (!timedOut && olderLink && olderLink.isConnected && event.target !== olderLink) return;
    clearTimeout(loadingOlder);
    loadingOlder = null;
    olderLink = null;
    // After the swap, not before: the inserted messages stay unannounced.
    releaseLater("older");
  }
  document.addEventListener("htmx:before:request", function (event) {
    if (!event.target || (event.target.id !== "older" && event.target.id !== "newer")) return;
    quiet(messages(), "older", true);
    clearTimeout(loadingOlder);
    olderLink = event.target;
    loadingOlder = setTimeout(function () { olderDone(null); }, 10000);
  });
  ["htmx:after:swap", "htmx:after:settle", "htmx:finally:request", "htmx:error"].forEach(function (name) {
    document.addEventListener(name, olderDone);
  });

  // Narrow screens: the button in the bar shows and hides the room list and the people.
  function sidebarOpen(open, focusInside) {
    var layout = document.querySelector(".layout");
    var toggle = document.getElementById("sidebar-toggle");
    if (!layout || !toggle) return;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      layout.dataset.sidebar = "open";
      var first = focusInside && document.querySelector("#sidebar a, #sidebar input, #sidebar button");
      if (first) first.focus();
    } else {
      delete layout.dataset.sidebar;
    }
  }
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest("#sidebar-toggle");
    if (!toggle) return;
    sidebarOpen(toggle.getAttribute("aria-expanded") !== "true", true);
  });
  // Escape closes what is open: the folded sidebar (focus goes back to its button).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var toggle = document.getElementById("sidebar-toggle");
    if (toggle && toggle.getAttribute("aria-expanded") === "true") {
      sidebarOpen(false, false);
      toggle.focus();
      event.preventDefault();
    }
  });

  // Every message gets "React", and your own (they carry your tag, the page's data-me)
  // "Edit" and "Delete", from a template in the page: the same bytes go to everyone, so
  // no buttons are in a message. A reaction you made shows pressed.
  function myTag() {
    var layout = document.querySelector(".layout[data-me]");
    var me = layout && layout.dataset.me;
    return me && /^[0-9a-f]+$/.test(me) ? me : "";
  }
  function moderator() {
    return document.querySelector(".layout[data-moderator]") !== null;
  }
  function prepareArticles(root) {
    var actions = document.getElementById("msg-actions");
    var me = myTag();
    if (!root || !actions) return;
    root.querySelectorAll("article.msg:not([data-ready])").forEach(function (a) {
      a.setAttribute("data-ready", "");
      // Messages are reached with the arrow keys, not one Tab stop per button (see
      // below): a message and its buttons are out of the Tab order until it is picked.
      a.setAttribute("tabindex", "-1");
      a.querySelectorAll("button").forEach(function (b) { b.setAttribute("tabindex", "-1"); });
      var mine = me !== "" && a.dataset.author === me;
      if (mine) a.classList.add("mine");
      a.querySelectorAll("button.reaction").forEach(function (r) {
        var by = (r.dataset.by || "").split(" ");
        r.setAttribute("aria-pressed", me !== "" && by.indexOf(me) >= 0 ? "true" : "false");
      });
      if (a.classList.contains("deleted")) return;
      var row = actions.content.firstElementChild.cloneNode(true);
      // A moderator may delete anyone's message (the store checks): "Delete" stays.
      var keep = moderator() ? ".own:not([data-act='delete'])" : ".own";
      if (!mine) row.querySelectorAll(keep).forEach(function (b) { b.remove(); });
      a.appendChild(row);
    });
  }

  // The log with the keyboard: it scrolls with the arrow keys; Enter picks the newest
  // message, Up and Down (Home, End) move between messages, Tab reaches the picked
  // message's buttons (only that message's are in the Tab order), Escape goes back to
  // the log. One Tab stop for the log however many messages it holds.
  function articles() {
    var list = messages();
    return list ? Array.prototype.slice.call(list.querySelectorAll("article.msg")) : [];
  }
  function pick(article) {
    if (!article) return;
    article.focus();
    article.scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (event) {
    var list = messages();
    var target = event.target;
    if (!list || event.altKey || event.ctrlKey || event.metaKey) return;
    if (target === list && event.key === "Enter") {
      var all = articles();
      pick(all[all.length - 1]);
      event.preventDefault();
      return;
    }
    if (event.key === "Escape" && target.closest && target.closest("#messages article.msg")) {
      list.focus();
      event.preventDefault();
      return;
    }
    if (!target.matches || !target.matches("#messages article.msg")) return;
    var all = articles();
    var at = all.indexOf(target);
    var next = null;
    if (event.key === "ArrowUp") next = all[at - 1];
    else if (event.key === "ArrowDown") next = all[at + 1];
    else if (event.key === "Home") next = all[0];
    else if (event.key === "End") next = all[all.length - 1];
    else return;
    event.preventDefault();
    pick(next || target);
  });
  document.addEventListener("focusin", function (event) {
    var article = event.target.closest && event.target.closest("#messages article.msg");
    articles().forEach(function (a) {
      var tab = a === article ? "0" : "-1";
      a.querySelectorAll("button").forEach(function (b) { b.setAttribute("tabindex", tab); });
    });
  });

  // Reacting: "React" opens the picker above the composer (outside the log, so nothing
  // swapped into the log can take it away); an emoji there, or a reaction on a message,
  // toggles yours.
  var pickingFor = null;
  function openPicker(article, button) {
    var picker = document.getElementById("picker");
    if (!picker) return;
    pickingFor = { id: messageId(article), button: button };
    var author = article.querySelector(".author");
    document.getElementById("picker-label").textContent =
      "React to " + (author ? author.textContent : "the message") + ":";
    picker.hidden = false;
    button.setAttribute("aria-expanded", "true");
    var first = picker.querySelector("button");
    if (first) first.focus();
  }
  function closePicker(focusBack) {
    var picker = document.getElementById("picker");
    if (picker) picker.hidden = true;
    if (!pickingFor) return;
    var button = pickingFor.button;
    pickingFor = null;
    button.setAttribute("aria-expanded", "false");
    if (focusBack && button.isConnected) button.focus();
    else if (focusBack) { var t = document.getElementById("text"); if (t) t.focus(); }
  }
  // Replying: "Reply" shows what you answer above the composer (with a way to cancel)
  // and puts its id in the composer's reply_to field; sending or cancelling clears both.
  function startReply(article) {
    var field = document.getElementById("reply-to");
    var bar = document.getElementById("replying");
    if (!field || !bar) return;
    var author = article.querySelector(".author");
    var text = article.querySelector(".text");
    var excerpt = text ? text.textContent.trim() : "";
    if (excerpt.length > 80) excerpt = excerpt.slice(0, 80) + "\u2026";
    field.value = messageId(article);
    document.getElementById("replying-text").textContent =
      "Replying to " + (author ? author.textContent : "a message") + ": " + excerpt;
    bar.hidden = false;
    var input = document.getElementById("text");
    if (input) input.focus();
  }
  function endReply() {
    var field = document.getElementById("reply-to");
    var bar = document.getElementById("replying");
    if (field) field.value = "";
    if (bar) bar.hidden = true;
  }

  // A quote links to the message it answers. If that message is older than what the page
  // has loaded, older pages are loaded (as scrolling up would) until it is there, at most
  // 40 pages; then it is scrolled to, marked for a moment and given the focus.
  function reveal(id, pagesLeft) {
    var target = document.getElementById(id);
    var list = messages();
    if (target) {
      target.scrollIntoView({ block: "center" });
      target.classList.add("sought");
      setTimeout(function () { target.classList.remove("sought"); }, 2500);
      target.focus({ preventScroll: true });
      return;
    }
    var older = document.getElementById("older");
    if (!list || !older || !older.hasAttribute("hx-get") || pagesLeft <= 0) return;
    list.scrollTop = 0;
    setTimeout(function () { reveal(id, pagesLeft - 1); }, 250);
  }

  // A room opened at one of its messages: the log holds the messages around it, then,
  // unless they reach the present, a "load newer" element and the room's recent
  // messages. The history the socket sends on connecting replaces the log; the messages
  // older than its first are put back above it, with "load newer" between, which joins
  // the two parts when what it loads meets the recent ones. (On a reconnect the page
  // reloads: see below.)
  function aroundId() {
    var layout = document.querySelector(".layout[data-around]");
    return layout && /^[0-9]+$/.test(layout.dataset.around) ? layout.dataset.around : "";
  }
  function idOf(article) { return parseInt(article.id.replace(/^msg-/, ""), 10); }
  function elementOf(html) {
    var holder = document.createElement("div");
    holder.innerHTML = html;
    return holder.firstElementChild;
  }
  var keptWindow = null;
  var revealedOnce = false;
  function keepWindow(list) {
    keptWindow = list ? Array.prototype.slice.call(list.children) : null;
  }
  function restoreWindow(list) {
    var saved = keptWindow;
    keptWindow = null;
    var layout = document.querySelector(".layout[data-room]");
    if (!saved || !list || !layout) return;
    var firstLive = list.querySelector("article.msg");
    var from = firstLive ? idOf(firstLive) : Infinity;
    var older = null;
    var kept = [];
    var newest = 0;
    // Only what is above a "load newer" still waiting is known to be whole: below it were
    // the recent messages of before, which the new history and "load newer" bring again.
    var gap = false;
    saved.forEach(function (node) {
      if (node.id === "newer") gap = true;
      else if (node.id === "older") older = node.outerHTML;
      else if (!gap && node.matches("article.msg") && idOf(node) < from) {
        kept.push(node);
        newest = Math.max(newest, idOf(node));
      }
    });
    if (!kept.length) return;
    var liveOlder = list.querySelector("#older");
    if (liveOlder) liveOlder.remove();
    var anchor = list.firstChild;
    var added = [];
    if (older) added.push(elementOf(older));
    added = added.concat(kept);
    if (firstLive) {
      added.push(elementOf('<div id="newer" class="newer" hx-get="/rooms/' +
        encodeURIComponent(layout.dataset.room) + "/history?after=" + newest +
        '" hx-trigger="revealed" hx-swap="outerHTML">Loading newer messages\u2026</div>'));
    }
    added.forEach(function (node) {
      list.insertBefore(node, anchor);
      if (!node.matches("article") && window.htmx) htmx.process(node);
    });
  }
  // After "load newer": a message shown twice (what it loaded reached the recent ones)
  // stays only in the later place, and then the two parts are one: "load newer" goes.
  function joinWindow() {
    var newer = document.getElementById("newer");
    var seen = {};
    var met = false;
    var all = articles();
    for (var i = all.length - 1; i >= 0; i--) {
      if (!seen[all[i].id]) { seen[all[i].id] = true; continue; }
      if (newer && (all[i].compareDocumentPosition(newer) & Node.DOCUMENT_POSITION_FOLLOWING)) met = true;
      all[i].remove();
    }
    if (newer && met) newer.remove();
  }

  function sendChange(kind, id, emoji) {
    var change = document.getElementById("change");
    if (!change) return;
    change.querySelector('input[name="kind"]').value = kind;
    change.querySelector('input[name="id"]').value = id;
    change.querySelector('input[name="emoji"]').value = emoji || "";
    change.requestSubmit();
  }

  // A fresh id for the next message the composer sends (hex of 16 random bytes; the
  // Web Crypto random source works on plain http too).
  function newClientId() {
    var field = document.getElementById("client-id");
    if (!field || !window.crypto || !crypto.getRandomValues) return;
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    field.value = Array.prototype.map.call(bytes, function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  }

  function messageId(article) { return article.id.replace(/^msg-/, ""); }

  // Editing: the message turns into a form with its text (a copy of the page's template),
  // sent over the socket like the composer. The new version replaces the article for
  // everyone, this page included.
  function startEdit(article) {
    var open = article.querySelector("form.edit-form");
    if (open) { open.querySelector('textarea[name="text"]').focus(); return; }
    var template = document.getElementById("edit-template");
    var text = article.querySelector(".text");
    if (!template || !text || article.classList.contains("deleted")) return;
    var form = template.content.firstElementChild.cloneNode(true);
    var id = messageId(article);
    var input = form.querySelector('textarea[name="text"]');
    form.querySelector('input[name="id"]').value = id;
    input.id = "edit-" + id;
    form.querySelector("label").htmlFor = input.id;
    // What the page shows is rendered Markdown: the field gets the text as written, from
    // the server (what is shown stands in until it comes, and if it cannot).
    input.value = text.textContent;
    article.classList.add("editing");
    article.appendChild(form);
    if (window.htmx) htmx.process(form);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
    var layout = document.querySelector(".layout[data-room]");
    if (layout && window.fetch) {
      var edited = input.value;
      fetch("/rooms/" + encodeURIComponent(layout.dataset.room) + "/messages/" + id + "/source", {
        credentials: "same-origin", cache: "no-store"
      }).then(function (response) {
        return response.ok ? response.text() : null;
      }).then(function (source) {
        // Only if the reader has not started typing meanwhile.
        if (source !== null && input.isConnected && input.value === edited) {
          input.value = source;
          input.setSelectionRange(source.length, source.length);
        }
      }).catch(function () {});
    }
  }
  function endEdit(form, focusEditButton) {
    var article = form && form.closest("article");
    if (!form) return;
    form.remove();
    if (!article) return;
    article.classList.remove("editing");
    var edit = article.querySelector('button[data-act="edit"]');
    if (focusEditButton && edit) edit.focus();
  }
  function askDelete(article) {
    if (!window.confirm("Delete this message? Everyone will see \u201cmessage deleted\u201d in its place.")) return;
    sendChange("delete", messageId(article));
  }
  document.addEventListener("click", function (event) {
    var quote = event.target.closest && event.target.closest("#messages a.quote");
    if (quote) {
      event.preventDefault();
      reveal(quote.getAttribute("href").slice(1), 40);
      return;
    }
    var button = event.target.closest && event.target.closest("button[data-act]");
    if (!button) return;
    var article = button.closest("article.msg");
    var act = button.dataset.act;
    if (act === "edit" && article) startEdit(article);
    else if (act === "delete" && article) askDelete(article);
    else if (act === "cancel") endEdit(button.closest("form.edit-form"), true);
    else if (act === "react" && article) sendChange("react", messageId(article), button.dataset.emoji);
    else if (act === "pick" && article) openPicker(article, button);
    else if (act === "reply" && article) startReply(article);
    else if (act === "reply-cancel") {
      endReply();
      var input = document.getElementById("text");
      if (input) input.focus();
    }
    else if (act === "pick-emoji" && pickingFor) {
      sendChange("react", pickingFor.id, button.dataset.emoji);
      closePicker(true);
    } else if (act === "pick-cancel") closePicker(true);
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key === "Escape" && target.closest && target.closest("form.edit-form")) {
      endEdit(target.closest("form.edit-form"), true);
      event.preventDefault();
      event.stopPropagation();
    } else if (event.key === "Escape" && target.id === "text" && !document.getElementById("replying").hidden) {
      endReply();
      event.preventDefault();
      event.stopPropagation();
    } else if (event.key === "Escape" && pickingFor) {
      closePicker(true);
      event.preventDefault();
      event.stopPropagation();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing &&
               target.matches && target.matches("#text, form.edit-form textarea")) {
      // Enter sends (or saves); Shift+Enter is a new line, for lists and code blocks.
      event.preventDefault();
      var form = target.form;
      if (form && target.value.trim() !== "") form.requestSubmit();
    } else if (event.key === "ArrowUp" && target.id === "text" && target.value === "") {
      // Up in an empty composer edits your last message, as in most chats.
      var mine = document.querySelectorAll("#messages article.mine:not(.deleted)");
      if (mine.length) {
        startEdit(mine[mine.length - 1]);
        event.preventDefault();
      }
    }
  }, true);

  // The composer grows with what is typed (up to a few lines), and shrinks when sent.
  function fitComposer() {
    var input = document.getElementById("text");
    if (!input || input.tagName !== "TEXTAREA") return;
    var lines = input.value.split("\n").length;
    input.rows = Math.min(Math.max(lines, 1), 6);
  }
  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "text") fitComposer();
  });

  var stickToBottom = true;
  var articlesBefore = 0;
  var replacing = false;

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
      // Dropped for falling behind (a sleeping laptop, a slow link), signed out on
      // another tab or device, or banned: start afresh as whoever this browser is now.
      setStatus("closed", "closed by the server; reloading…");
      setTimeout(function () { location.reload(); }, 1500 + Math.random() * 1500);
    } else {
      setStatus("closed", "disconnected; reload the page to continue");
    }
  });

  // A message replaced while the focus is on one of its buttons (someone reacted, you
  // reacted): the focus goes to the same button of the new version, not to the page.
  var focusedIn = null;
  function rememberFocus() {
    var active = document.activeElement;
    var article = active && active.closest && active.closest("#messages article.msg");
    focusedIn = article
      ? { article: article.id, act: active.dataset.act || "", emoji: active.dataset.emoji || "" }
      : null;
  }
  function restoreFocus() {
    if (!focusedIn) return;
    var was = focusedIn;
    focusedIn = null;
    var article = document.getElementById(was.article);
    if (!article || article.contains(document.activeElement)) return;
    if (!was.act) { article.focus(); return; }
    var buttons = article.querySelectorAll('button[data-act="' + was.act + '"]');
    for (var i = 0; i < buttons.length; i++) {
      if ((buttons[i].dataset.emoji || "") === was.emoji) { buttons[i].focus(); return; }
    }
    var any = article.querySelector('button[data-act="pick"]');
    if (any) any.focus();
  }

  document.addEventListener("htmx:ws:before:message:incoming", function (event) {
    rememberFocus();
    var list = messages();
    replacing = replacesHistory(event.detail);
    if (replacing) quiet(list, "history", true);
    // Opened at a message: the first history keeps the messages around it. A later one
    // (a reconnect) reloads the page instead: edits and deletes made while it was away
    // reach only the recent messages, and the kept ones would stay as they were.
    if (replacing && aroundId() && revealedOnce) {
      location.reload();
      return;
    }
    if (replacing && aroundId()) keepWindow(list);
    stickToBottom = !list || nearBottom(list);
    articlesBefore = list ? list.querySelectorAll("article").length : 0;
  });
  document.addEventListener("htmx:ws:after:message:incoming", function () {
    var list = messages();
    var arrived = replacing;
    // The kept messages go back first, so the focus can return to one of them.
    if (replacing) {
      replacing = false;
      restoreWindow(list);
      releaseLater("history");
    }
    if (list) prepareArticles(list);
    restoreFocus();
    var input = document.getElementById("text");
    if (input && document.activeElement === document.body) input.focus();
    markCurrentRoom();
    if (!list) return;
    localTimes(list);
    prepareArticles(list);
    if (arrived && aroundId() && !revealedOnce) {
      // The first history: back to the message the room was opened at.
      revealedOnce = true;
      reveal("msg-" + aroundId(), 0);
    } else if (stickToBottom) list.scrollTop = list.scrollHeight;
    if (document.hidden) {
      var added = list.querySelectorAll("article").length - articlesBefore;
      if (added > 0) {
        unread += added;
        showUnread();
      }
    }
  });

  // Older messages arrive over plain HTTP ("load older", "load newer"): give them local
  // times too.
  document.addEventListener("htmx:after:swap", function () {
    var list = messages();
    if (list) {
      joinWindow();
      localTimes(list);
      prepareArticles(list);
    }
  });

  // Fired when the form's values have been collected, whether the socket is open (sent at
  // once) or not (queued by the extension and sent on reconnect): either way it is handed
  // over, so the input is cleared now and never wiped later.
  document.addEventListener("htmx:ws:before:message:outgoing", function (event) {
    // A read mark (reads.js) is no message: nothing to clear.
    if (event.target.id === "read-form") return;
    if (event.target.id === "typing-signal") {
      // htmx's throttle fires once more at the end of its window; after the message was
      // sent (the input is empty) that would announce typing that is over.
      var input = document.getElementById("text");
      if (!input || input.value.trim() === "") event.detail.cancelled = true;
      return;
    }
    var form = event.target.closest ? event.target.closest("form") : null;
    if (form) form.reset();
    if (form && form.id === "composer") {
      newClientId();
      endReply();
      setTimeout(fitComposer, 0);
    }
    if (form && form.classList.contains("edit-form")) {
      // Sent: the new version will replace the message; typing goes on in the composer.
      setTimeout(function () { endEdit(form, false); }, 0);
      var composer = document.getElementById("text");
      if (composer) composer.focus();
    }
    var notice = document.getElementById("notice");
    if (notice) notice.textContent = "";
  });

  document.addEventListener("DOMContentLoaded", function () {
    markCurrentRoom();
    newClientId();
    var list = messages();
    if (list) {
      prepareArticles(list);
      localTimes(list);
      if (aroundId()) reveal("msg-" + aroundId(), 0);
      else list.scrollTop = list.scrollHeight;
    }
    // The search page's results show times in the reader's time zone too.
    var results = document.getElementById("results");
    if (results) localTimes(results, true);
  });
})();
