/* proton-probe live panels: refresh what the server rendered, every 2 s, from the page's JSON
   twin. Vanilla JS, no dependency; without it the pages still show the numbers as rendered. */
(function () {
  "use strict";
  var PERIOD_MS = 2000, KEEP = 150;

  function color(label) {  /* the same hash as probes.serve.ui.color */
    var h = 0;
    for (var i = 0; i < label.length; i++) h = (h * 31 + label.charCodeAt(i)) % 360;
    return "hsl(" + (h * 137 % 360) + ",62%,45%)";
  }
  function fmt(v, kind) {
    if (v === null || v === undefined) return "\u2014";
    if (kind === "pct") return v ? (100 * v).toPrecision(3).replace(/\.?0+$/, "") + "%" : "0%";
    if (kind === "ms") return v < 1000 ? v.toFixed(1) + " ms" : (v / 1000).toFixed(2) + " s";
    if (typeof v === "number") return v.toLocaleString("en-US", {maximumFractionDigits: 3});
    return String(v);
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function splitBar(box, versions) {
    var items = Object.keys(versions || {}).map(function (k) { return [k, versions[k]]; })
      .filter(function (kv) { return kv[1] > 0; })
      .sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : 1); });
    var total = items.reduce(function (s, kv) { return s + kv[1]; }, 0) || 1;
    var bar = el("div", {"class": "split", role: "img", "aria-label": "traffic split: " +
      items.map(function (kv) { return kv[0] + " " + (100 * kv[1] / total).toFixed(2) + "%"; }).join(", ")});
    var legend = el("div", {"class": "legend"});
    items.forEach(function (kv) {
      var pct = (100 * kv[1] / total).toFixed(2);
      bar.appendChild(el("i", {style: "width:" + pct + "%;background:" + color(kv[0]),
                               title: kv[0] + " " + pct + "%"}));
      var s = el("span", {}); s.appendChild(el("i", {style: "background:" + color(kv[0])}));
      s.appendChild(document.createTextNode(kv[0] + " " + fmt(kv[1], "pct")));
      legend.appendChild(s);
    });
    if (!items.length) legend.appendChild(el("span", {"class": "muted"}, "no answers in the window"));
    box.replaceChildren(bar, legend);
  }
  function rolloutLine(box, r) {  /* the same line as templates/targets.html renders */
    if (!r) { box.replaceChildren(el("div", {"class": "muted"}, "No rollout captured yet.")); return; }
    var line = el("div", {}, "Last rollout: ");
    var base = box.getAttribute("data-base") || "";
    line.appendChild(el("a", {href: base + "/runs/" + encodeURIComponent(r.run_id)},
                        fmt(r.from_version) + " \u2192 " + fmt(r.to_version)));
    line.appendChild(document.createTextNode(" "));
    line.appendChild(el("span", {"class": "badge"}, r.status || "\u2014"));
    box.replaceChildren(line);
  }
  function update(card, t) {
    card.querySelectorAll("[data-live]").forEach(function (node) {
      var key = node.getAttribute("data-live");
      if (key === "versions") splitBar(node, t.versions);
      else if (key === "rollout") rolloutLine(node, t.rollout);
      else if (key === "state") {
        var b = el("span", {"class": "badge state-" + (t.state || "none")}, t.state || "\u2014");
        node.replaceChildren(b);
      } else node.textContent = fmt(t[key], node.getAttribute("data-kind"));
    });
  }
  function get(url, done) {
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) done(data); })
      .catch(function () { /* the next tick tries again */ });
  }
  var history = [];
  function drawCharts(box) {
    var labels = {};
    history.forEach(function (h) { Object.keys(h.t.versions || {}).forEach(function (k) { labels[k] = 1; }); });
    box.querySelectorAll("svg[data-chart]").forEach(function (svg) {
      var metric = svg.getAttribute("data-chart"), W = 600, H = 120, pad = 14;
      var series = history.map(function (h) {
        return metric === "share" ? h.t.versions || {} : {all: h.t[metric]};
      });
      var keys = metric === "share" ? Object.keys(labels) : ["all"];
      var max = metric === "share" ? 1 : Math.max.apply(null, series.map(function (s) { return s.all || 0; }).concat([1e-9]));
      var nodes = [svgEl("text", {x: 2, y: 10}, metric + " (max " + fmt(max, metric === "p99_ms" ? "ms" : "pct") + ")")];
      keys.forEach(function (k) {
        var pts = series.map(function (s, i) {
          var v = s[k] || 0, x = pad + (W - 2 * pad) * i / Math.max(1, series.length - 1);
          return x.toFixed(1) + "," + (H - pad - (H - 2 * pad) * v / max).toFixed(1);
        });
        nodes.push(svgEl("polyline", {points: pts.join(" "), fill: "none", "stroke-width": 1.5,
                                      stroke: k === "all" ? "#0969da" : color(k)}));
      });
      svg.replaceChildren.apply(svg, nodes);
    });
    box.hidden = false;
  }
  function tick() {
    document.querySelectorAll("[data-live-list]").forEach(function (list) {
      get(list.getAttribute("data-live-list"), function (targets) {
        targets.forEach(function (t) {
          list.querySelectorAll("[data-target]").forEach(function (card) {
            if (card.getAttribute("data-target") === t.name) update(card, t);
          });
        });
      });
    });
    document.querySelectorAll("[data-live-one]").forEach(function (box) {
      get(box.getAttribute("data-live-one"), function (t) {
        update(box, t);
        history.push({at: Date.now(), t: t});
        if (history.length > KEEP) history.shift();
        var charts = box.querySelector("[data-live-charts]");
        if (charts) drawCharts(charts);
      });
    });
  }
  if (document.querySelector("[data-live-list],[data-live-one]")) {
    tick();
    setInterval(tick, PERIOD_MS);
  }
})();
