/* Courtyard realtime client: one Server-Sent Events stream per tab (core/realtime.py).
 *
 * Connects when the page has <div id="screen-pop" data-events="/events">.
 * Each message is {"id", "event", "payload"}; it is announced as the DOM event
 * `courtyard:realtime` (and `courtyard:<event>`) on document, and a payload
 * with `fragment` (a URL) is fetched with htmx into `payload.target`
 * (default #screen-pop): the server renders it in the user's own context.
 *
 * The last message id is kept per tab (sessionStorage): after a page change
 * the new stream asks for what came meanwhile (`?after=`); the browser's own
 * reconnects send it as Last-Event-ID. htmx-ext-sse is not used here because
 * it cannot do either (htmx-extensions #184).
 */
(function () {
  "use strict";

  var KEY = "courtyard.realtime.last";
  var source = null;

  function lastId() {
    try { return window.sessionStorage.getItem(KEY) || ""; } catch (e) { return ""; }
  }

  function remember(id) {
    try { window.sessionStorage.setItem(KEY, String(id)); } catch (e) { /* private mode: reconnects still work */ }
  }

  function handle(message) {
    var payload = message.payload || {};
    var detail = { id: message.id, event: message.event, payload: payload };
    document.dispatchEvent(new CustomEvent("courtyard:realtime", { detail: detail }));
    document.dispatchEvent(new CustomEvent("courtyard:" + message.event, { detail: detail }));
    if (payload.fragment && window.htmx) {
      var target = payload.target || "#screen-pop";
      if (document.querySelector(target)) {
        window.htmx.ajax("GET", payload.fragment, { target: target, swap: payload.swap || "innerHTML" });
      }
    }
    if (payload.toast && window.Courtyard) window.Courtyard.toast(payload.toast, payload.level || "info");
  }

  function connect() {
    var holder = document.getElementById("screen-pop");
    var url = holder && holder.getAttribute("data-events");
    if (!url || !window.EventSource || source) return;
    var last = lastId();
    source = new EventSource(url + (last ? (url.indexOf("?") === -1 ? "?" : "&") + "after=" + encodeURIComponent(last) : ""));
    source.onmessage = function (evt) {
      var message;
      try { message = JSON.parse(evt.data); } catch (e) { return; }
      if (evt.lastEventId) remember(evt.lastEventId);
      handle(message);
    };
  }

  // Let the browser close the stream when the tab goes away (frees one of its ~6 connections).
  window.addEventListener("pagehide", function () {
    if (source) { source.close(); source = null; }
  });
  window.addEventListener("pageshow", function (evt) { if (evt.persisted) connect(); });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();
})();
