/* Courtyard front-end helpers: plain JavaScript, no build step.
 *
 * Loaded with `defer` after htmx, its SSE extension and Chart.js. Everything
 * here is wired through delegated listeners on document/window, so it keeps
 * working for content that htmx swaps in later. No inline scripts are needed
 * (the Content-Security-Policy allows script files from 'self' only).
 *
 *  - CSRF header on every htmx request (from <meta name="csrf-token">)
 *  - toasts: `showToast` events (HX-Trigger) and server-rendered .toast elements
 *  - charts: <canvas data-chart='{"type":..,"labels":[..],"datasets":[..]}'>
 *  - <form data-confirm="..."> (and submit buttons with data-confirm)
 *  - <select data-navigate>: choosing an option opens the URL in its value
 *  - sidebar drawer toggle, <details class="dropdown"> closing
 *  - global search dropdown (Escape, click outside, "/" shortcut, arrow keys,
 *    no requests while a Chinese IME is still composing)
 *  - .screen-pop .close
 */
(function () {
  "use strict";

  var doc = document;
  var TOAST_MS = 5000;
  var LEVELS = { success: "success", error: "error", danger: "error", info: "info", warning: "warning", warn: "warning" };

  function reducedMotion() {
    return !!(window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches);
  }

  function closest(el, selector) {
    return el && el.nodeType === 1 ? el.closest(selector) : (el && el.parentElement ? el.parentElement.closest(selector) : null);
  }

  function isTypingTarget(el) {
    if (!el || el.nodeType !== 1) return false;
    if (el.isContentEditable) return true;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }

  /* ---------------------------------------------------------------- CSRF */

  function csrfToken() {
    var meta = doc.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  doc.addEventListener("htmx:configRequest", function (evt) {
    var token = csrfToken();
    if (token) evt.detail.headers["x-csrftoken"] = token;
  });

  /* -------------------------------------------------------------- Toasts */

  function toastStack() {
    var stack = doc.querySelector(".toast-stack");
    if (!stack) {
      stack = doc.createElement("div");
      stack.className = "toast-stack";
      stack.id = "toasts";
      stack.setAttribute("aria-live", "polite");
      doc.body.appendChild(stack);
    }
    return stack;
  }

  function stackText(name, fallback) {
    var stack = doc.querySelector(".toast-stack");
    return (stack && stack.getAttribute("data-" + name)) || fallback;
  }

  function dismissToast(el) {
    if (el._cyGone) return;
    el._cyGone = true;
    clearTimeout(el._cyTimer);
    el.classList.add("hiding");
    setTimeout(function () {
      if (el.parentNode) el.parentNode.removeChild(el);
    }, reducedMotion() ? 0 : 320);
  }

  function armToast(el) {
    if (el._cyArmed) return;
    el._cyArmed = true;
    var level = LEVELS[String(el.getAttribute("data-level") || "info").toLowerCase()] || "info";
    el.setAttribute("data-level", level);
    el.classList.add("toast", "toast-" + level);
    if (!el.hasAttribute("role")) el.setAttribute("role", level === "error" ? "alert" : "status");

    var close = doc.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", stackText("close-label", "Close"));
    close.textContent = "\u00d7";
    el.appendChild(close);

    var stack = toastStack();
    if (el.parentNode !== stack) stack.appendChild(el);

    function start() {
      clearTimeout(el._cyTimer);
      el._cyTimer = setTimeout(function () { dismissToast(el); }, TOAST_MS);
    }
    el.addEventListener("mouseenter", function () { clearTimeout(el._cyTimer); });
    el.addEventListener("mouseleave", start);
    el.addEventListener("focusin", function () { clearTimeout(el._cyTimer); });
    el.addEventListener("focusout", start);
    el.addEventListener("click", function () { dismissToast(el); });
    start();
  }

  function showToast(message, level) {
    if (message == null || message === "") return;
    var el = doc.createElement("div");
    el.className = "toast";
    el.setAttribute("data-level", level || "info");
    el.textContent = String(message); // text only: never HTML from the server
    armToast(el);
    return el;
  }

  function armToastsIn(root) {
    var scope = root && root.querySelectorAll ? root : doc;
    var list = scope.querySelectorAll(".toast[data-level]");
    for (var i = 0; i < list.length; i++) armToast(list[i]);
    if (scope.matches && scope.matches(".toast[data-level]")) armToast(scope);
  }

  // HX-Trigger: {"showToast": {"level": "success", "message": "..."}}
  doc.addEventListener("showToast", function (evt) {
    var d = evt.detail || {};
    if (typeof d === "string") d = { message: d };
    showToast(d.message, d.level);
  });

  function hasToastTrigger(xhr) {
    try {
      var names = ["HX-Trigger", "HX-Trigger-After-Swap", "HX-Trigger-After-Settle"];
      for (var i = 0; i < names.length; i++) {
        var h = xhr.getResponseHeader(names[i]);
        if (h && h.indexOf("showToast") !== -1) return true;
      }
    } catch (e) { /* ignore */ }
    return false;
  }

  // A failed htmx request would otherwise do nothing visible.
  doc.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail && evt.detail.xhr;
    if (!xhr || hasToastTrigger(xhr)) return;
    var message = "";
    try {
      // core/error.html puts the message in #error-message
      var page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
      var node = page.getElementById("error-message");
      if (node) message = node.textContent.trim();
    } catch (e) { /* ignore */ }
    if (!message) message = stackText("msg-error", "The request failed. Please try again.") + " (" + xhr.status + ")";
    showToast(message, "error");
  });
  doc.addEventListener("htmx:sendError", function () {
    showToast(stackText("msg-network", "Cannot reach the server. Check the network connection and try again."), "error");
  });

  /* -------------------------------------------------------------- Charts */

  // brand first (from --brand), then colours that stay distinct from a blue brand
  var PALETTE = ["#f59e0b", "#16a34a", "#7c3aed", "#0891b2", "#dc2626", "#db2777", "#65a30d", "#ea580c", "#475569", "#2f6fde"];

  function cssVar(name, fallback) {
    var v = getComputedStyle(doc.documentElement).getPropertyValue(name);
    v = v ? v.trim() : "";
    return v || fallback;
  }

  function palette() {
    var brand = cssVar("--brand", PALETTE[0]);
    var out = [brand];
    for (var i = 0; i < PALETTE.length; i++) {
      if (PALETTE[i].toLowerCase() !== brand.toLowerCase()) out.push(PALETTE[i]);
    }
    return out;
  }

  function withAlpha(color, alpha) {
    var m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color);
    if (!m) return color;
    var hex = m[1];
    if (hex.length === 3) hex = hex[0] + hex[0] + hex[1] + hex[1] + hex[2] + hex[2];
    var n = parseInt(hex, 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function isPlainObject(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v);
  }

  function merge(target, source) {
    Object.keys(source || {}).forEach(function (key) {
      if (isPlainObject(source[key]) && isPlainObject(target[key])) merge(target[key], source[key]);
      else target[key] = source[key];
    });
    return target;
  }

  function buildConfig(spec) {
    var type = spec.type || "bar";
    var circular = type === "doughnut" || type === "pie" || type === "polarArea";
    var colors = palette();
    var labels = spec.labels || [];
    var surface = cssVar("--surface", "#ffffff");
    var text = cssVar("--muted", "#5f6b7a");
    var grid = cssVar("--border", "#e1e6ed");

    var datasets = (spec.datasets || []).map(function (ds, i) {
      var out = merge({}, ds);
      var c = colors[i % colors.length];
      if (circular) {
        if (!out.backgroundColor) out.backgroundColor = labels.map(function (_, j) { return colors[j % colors.length]; });
        if (!out.borderColor) out.borderColor = surface;
        if (out.borderWidth == null) out.borderWidth = 2;
      } else if (type === "line") {
        if (!out.borderColor) out.borderColor = c;
        if (!out.backgroundColor) out.backgroundColor = withAlpha(c, 0.15);
        if (out.tension == null) out.tension = 0.3;
        if (out.pointRadius == null) out.pointRadius = 3;
        if (out.borderWidth == null) out.borderWidth = 2;
      } else {
        if (!out.backgroundColor) out.backgroundColor = c;
        if (!out.borderColor) out.borderColor = c;
        if (out.borderRadius == null) out.borderRadius = 3;
        if (out.maxBarThickness == null) out.maxBarThickness = 44;
      }
      return out;
    });

    var options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: reducedMotion() ? false : { duration: 400 },
      locale: doc.documentElement.lang || undefined,
      plugins: {
        legend: {
          display: circular || datasets.length > 1,
          position: "bottom",
          labels: { color: text, boxWidth: 12, boxHeight: 12, padding: 12 }
        },
        tooltip: { intersect: false, mode: circular ? "nearest" : "index" }
      }
    };
    if (circular) {
      if (type === "doughnut") options.cutout = "62%";
    } else {
      // counts (all integers) get integer ticks: no "2.5 work orders"
      var allIntegers = datasets.every(function (ds) {
        return (ds.data || []).every(function (v) { return v == null || (typeof v === "number" && Math.floor(v) === v); });
      });
      options.interaction = { intersect: false, mode: "index" };
      options.scales = {
        x: { grid: { display: false }, ticks: { color: text }, border: { color: grid } },
        y: { beginAtZero: true, grid: { color: grid }, ticks: { color: text }, border: { display: false } }
      };
      if (allIntegers) options.scales.y.ticks.precision = 0;
    }
    if (isPlainObject(spec.options)) merge(options, spec.options);

    return { type: type, data: { labels: labels, datasets: datasets }, options: options };
  }

  function renderChart(canvas, force) {
    var Chart = window.Chart;
    if (!Chart) return;
    var raw = canvas.getAttribute("data-chart");
    var existing = Chart.getChart(canvas);
    if (existing && !force && canvas._cyChartSpec === raw) return; // unchanged: keep it
    if (existing) existing.destroy();
    var spec;
    try {
      spec = JSON.parse(raw);
    } catch (e) {
      if (window.console) console.warn("courtyard: bad data-chart JSON", canvas, e);
      return;
    }
    canvas._cyChartSpec = raw;
    try {
      new Chart(canvas, buildConfig(spec || {}));
    } catch (e) {
      if (window.console) console.warn("courtyard: chart failed", canvas, e);
    }
  }

  function renderCharts(root) {
    var Chart = window.Chart;
    if (!Chart) return;
    // charts whose canvas left the page (swapped out) are destroyed
    Object.keys(Chart.instances || {}).forEach(function (key) {
      var chart = Chart.instances[key];
      if (chart && chart.canvas && !chart.canvas.isConnected) chart.destroy();
    });
    var scope = root && root.querySelectorAll ? root : doc;
    var list = scope.querySelectorAll("canvas[data-chart]");
    for (var i = 0; i < list.length; i++) renderChart(list[i], false);
    if (scope.matches && scope.matches("canvas[data-chart]")) renderChart(scope, false);
  }

  function setChartDefaults() {
    var Chart = window.Chart;
    if (!Chart || !Chart.defaults) return;
    Chart.defaults.font.family = getComputedStyle(doc.body).fontFamily;
    Chart.defaults.font.size = 12;
    Chart.defaults.color = cssVar("--muted", "#5f6b7a");
  }

  // Exposed for pages that change data-chart by other means.
  window.Courtyard = {
    toast: showToast,
    renderCharts: function (root) { renderCharts(root || doc); },
    renderChart: function (canvas) { renderChart(canvas, true); }
  };

  /* -------------------------------------------------------- Confirmation */

  // <form data-confirm="..."> or <button type="submit" data-confirm="...">.
  // Capture phase on window: runs before htmx's own submit handler.
  window.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!form || form.tagName !== "FORM") return;
    var submitter = evt.submitter;
    var message = (submitter && submitter.getAttribute && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      evt.preventDefault();
      evt.stopImmediatePropagation();
    }
  }, true);

  /* ------------------------------------------------------ Sidebar drawer */

  function sidebar() { return doc.querySelector(".sidebar"); }

  function setNav(open) {
    var nav = sidebar();
    if (!nav) return;
    nav.classList.toggle("open", open);
    var toggles = doc.querySelectorAll(".nav-toggle");
    for (var i = 0; i < toggles.length; i++) toggles[i].setAttribute("aria-expanded", open ? "true" : "false");
  }

  var drawerQuery = window.matchMedia ? window.matchMedia("(max-width: 899.98px)") : null;

  function navOpen() {
    var nav = sidebar();
    return !!(nav && nav.classList.contains("open") && (!drawerQuery || drawerQuery.matches));
  }

  // back to the desktop layout: forget the drawer state
  if (drawerQuery) {
    var onLayoutChange = function () { if (!drawerQuery.matches) setNav(false); };
    if (drawerQuery.addEventListener) drawerQuery.addEventListener("change", onLayoutChange);
    else if (drawerQuery.addListener) drawerQuery.addListener(onLayoutChange);
  }

  // Tapping outside the open drawer only closes it (the tap does not go through).
  doc.addEventListener("click", function (evt) {
    if (!navOpen()) return;
    if (closest(evt.target, ".sidebar") || closest(evt.target, ".nav-toggle")) return;
    evt.preventDefault();
    evt.stopPropagation();
    setNav(false);
  }, true);

  doc.addEventListener("click", function (evt) {
    var toggle = closest(evt.target, ".nav-toggle");
    if (toggle) {
      setNav(!navOpen());
      return;
    }

    // close open <details class="dropdown"> menus when clicking elsewhere
    var open = doc.querySelectorAll("details.dropdown[open]");
    for (var i = 0; i < open.length; i++) {
      if (!open[i].contains(evt.target)) open[i].removeAttribute("open");
    }

    // close the search dropdown when clicking outside the search box
    var results = doc.getElementById("search-results");
    if (results && !results.hidden && !closest(evt.target, ".global-search")) results.hidden = true;

    // screen pop close button
    var close = closest(evt.target, ".screen-pop .close");
    if (close) {
      var pop = closest(close, ".screen-pop");
      if (pop && pop.parentNode) pop.parentNode.removeChild(pop);
    }
  });

  // <select data-navigate>: each option's value is a URL to go to (e.g. the same page in another estate).
  doc.addEventListener("change", function (evt) {
    var select = closest(evt.target, "select[data-navigate]");
    if (select && select.value) window.location.assign(select.value);
  });

  /* ------------------------------------------------------- Global search */

  function searchInput() { return doc.getElementById("global-search"); }
  function searchResults() { return doc.getElementById("search-results"); }

  function resultLinks() {
    var results = searchResults();
    return results ? Array.prototype.slice.call(results.querySelectorAll("a[href]")) : [];
  }

  function hasContent(el) {
    return !!(el && el.textContent.trim() !== "" || (el && el.querySelector("a, img, svg")));
  }

  doc.addEventListener("htmx:afterSwap", function (evt) {
    var results = searchResults();
    if (results && evt.detail && evt.detail.target === results) {
      var input = searchInput();
      // keep it closed if the box was cleared meanwhile
      results.hidden = !hasContent(results) || (input && input.value.trim() === "");
    }
  });

  doc.addEventListener("focusin", function (evt) {
    var input = searchInput();
    var results = searchResults();
    if (!input || !results || evt.target !== input) return;
    if (input._cyKeepClosed) { input._cyKeepClosed = false; return; }
    if (input.value.trim() !== "" && hasContent(results)) results.hidden = false;
  });

  doc.addEventListener("input", function (evt) {
    var input = searchInput();
    var results = searchResults();
    if (input && results && evt.target === input && input.value.trim() === "") results.hidden = true;
  });

  // IME (pinyin) input: no request per keystroke while composing, one when done.
  doc.addEventListener("compositionstart", function (evt) {
    if (evt.target === searchInput()) evt.target._cyComposing = true;
  });
  doc.addEventListener("compositionend", function (evt) {
    var input = searchInput();
    if (evt.target !== input) return;
    input._cyComposing = false;
    if (window.htmx) window.htmx.trigger(input, "search");
  });
  doc.addEventListener("htmx:confirm", function (evt) {
    var input = searchInput();
    if (!input || evt.detail.elt !== input) return;
    var trig = evt.detail.triggeringEvent;
    if (input._cyComposing || (trig && trig.isComposing)) evt.preventDefault();
  });

  doc.addEventListener("keydown", function (evt) {
    var input = searchInput();
    var results = searchResults();
    var key = evt.key;

    // "/" focuses the global search unless the user is typing somewhere
    if (key === "/" && input && !evt.ctrlKey && !evt.metaKey && !evt.altKey && !evt.isComposing && !isTypingTarget(evt.target)) {
      evt.preventDefault();
      input.focus();
      input.select();
      return;
    }

    if (key === "Escape" || key === "Esc") {
      var handled = false;
      if (results && !results.hidden && (evt.target === input || results.contains(evt.target))) {
        results.hidden = true;
        if (input && doc.activeElement !== input) {
          input._cyKeepClosed = true; // focusing the box must not reopen the list
          input.focus();
          input._cyKeepClosed = false;
        }
        handled = true;
      }
      var open = doc.querySelectorAll("details.dropdown[open]");
      for (var i = 0; i < open.length; i++) {
        open[i].removeAttribute("open");
        if (open[i].contains(evt.target)) {
          var summary = open[i].querySelector("summary");
          if (summary) summary.focus();
        }
        handled = true;
      }
      if (navOpen()) {
        setNav(false);
        var toggle = doc.querySelector(".nav-toggle");
        if (toggle) toggle.focus();
        handled = true;
      }
      if (handled) evt.preventDefault(); // also keeps the search text (Chrome clears type=search on Escape)
      return;
    }

    // arrow keys move between the input and the result links
    if ((key === "ArrowDown" || key === "ArrowUp") && results && !results.hidden && input) {
      var links = resultLinks();
      if (!links.length) return;
      var idx = links.indexOf(doc.activeElement);
      if (evt.target === input && key === "ArrowDown") {
        evt.preventDefault();
        links[0].focus();
      } else if (idx !== -1) {
        evt.preventDefault();
        if (key === "ArrowDown") links[Math.min(idx + 1, links.length - 1)].focus();
        else if (idx === 0) input.focus();
        else links[idx - 1].focus();
      }
    }
  });

  /* ----------------------------------------------------------- Start-up */

  function init() {
    setChartDefaults();
    armToastsIn(doc);
    renderCharts(doc);
  }

  doc.addEventListener("htmx:afterSettle", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    armToastsIn(elt && elt.isConnected ? elt : doc);
    renderCharts(doc); // unchanged charts are kept; new or changed ones drawn
  });

  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", init);
  else init();
})();
