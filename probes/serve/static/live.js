/* proton-probe live panels: refresh what the server rendered, every 2 s, from the page's JSON
   twin, and draw a target's charts from its history (GET /api/v1/targets/{name}/history), so
   they open with the last 15 minutes. Vanilla JS, no dependency; without it the pages still
   show the numbers as rendered. */
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var STATE_WORDS = {idle: "watching", capturing: "capturing", running: "running a schedule"};

  function color(label) {  /* the same hash as probes.serve.ui.color */
    var h = 0;
    for (var i = 0; i < label.length; i++) h = (h * 31 + label.charCodeAt(i)) % 360;
    return "hsl(" + (h * 137 % 360) + ",62%,45%)";
  }
  /* the same as probes.serve.ui.fmt: 3 significant digits, never "1%" for 100 % */
  function fmt(v, kind) {
    if (v === null || v === undefined || (typeof v === "number" && !isFinite(v))) return "\u2014";
    if (kind === "pct") return v ? String(Number((100 * v).toPrecision(3))) + "%" : "0%";
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
      items.map(function (kv) { return kv[0] + " " + fmt(kv[1] / total, "pct"); }).join(", ")});
    var legend = el("div", {"class": "legend"});
    items.forEach(function (kv) {
      var pct = (100 * kv[1] / total).toFixed(2);
      bar.appendChild(el("i", {style: "width:" + pct + "%;background:" + color(kv[0]),
                               title: kv[0] + " " + fmt(kv[1] / total, "pct")}));
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
    line.appendChild(el("span", {"class": "badge status " + (r.status || "none")}, r.status || "\u2014"));
    if (r.started_at) {
      line.appendChild(document.createTextNode(" "));
      line.appendChild(el("span", {"class": "muted"},
                          String(r.started_at).replace("T", " ").replace(/\.\d+/, "")));
    }
    box.replaceChildren(line);
  }
  function badge(cls, text, title) {
    return el("span", {"class": "badge " + cls, title: title}, text);
  }
  function update(card, t) {
    if (card.classList.contains("card")) {
      card.className = "card health-" + (t.health || "none");
    }
    card.querySelectorAll("[data-live]").forEach(function (node) {
      var key = node.getAttribute("data-live");
      if (key === "versions") splitBar(node, t.versions);
      else if (key === "rollout") rolloutLine(node, t.rollout);
      else if (key === "state") {
        node.replaceChildren(badge("state-" + (t.state || "none"),
                                   STATE_WORDS[t.state] || t.state || "\u2014", "state: " + t.state));
      } else if (key === "health") {
        node.replaceChildren(badge("health-" + (t.health || "none"), t.health || "\u2014", "health"));
      } else if (key === "verdict") {
        node.replaceChildren(badge(t.verdict || "none", t.verdict ? "verdict " + t.verdict : "no verdict",
                                   "the latest rollout's verdict"));
      } else if (key === "problems") {
        node.replaceChildren.apply(node, (t.problems || []).map(function (p) { return el("li", {}, p); }));
      } else node.textContent = fmt(t[key], node.getAttribute("data-kind"));
    });
  }
  function get(url, done) {
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) done(data); })
      .catch(function () { /* the next tick tries again */ });
  }

  /* -- charts over time ------------------------------------------------------------------ */
  var W = 600, H = 150, L = 46, R = 8, T = 8, B = 20;
  function hhmm(t, step) { return new Date(t * 1000).toISOString().slice(11, step < 60 ? 19 : 16); }
  function tickStep(span) {
    var steps = [30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600];
    for (var i = 0; i < steps.length; i++) if (span / steps[i] <= 6) return steps[i];
    return 43200;
  }
  /* lines: [{label, color, points: [[t, v], ...], dashed}]; marks: [{t, label, dashed}] */
  function drawChart(svg, o) {
    var x = function (t) { return L + (W - L - R) * (t - o.t0) / Math.max(1, o.t1 - o.t0); };
    var ymax = o.ymax > 0 ? o.ymax : 1;
    var y = function (v) { return H - B - (H - T - B) * Math.min(v, ymax) / ymax; };
    var nodes = [
      svgEl("line", {"class": "axis", x1: L, y1: H - B, x2: W - R, y2: H - B}),
      svgEl("line", {"class": "axis", x1: L, y1: T, x2: L, y2: H - B}),
      svgEl("text", {x: 2, y: T + 10}, o.yfmt(ymax)),
      svgEl("text", {x: 2, y: H - B}, o.yfmt(0))
    ];
    var step = tickStep(o.t1 - o.t0);
    for (var t = Math.ceil(o.t0 / step) * step; t <= o.t1; t += step) {
      nodes.push(svgEl("line", {"class": "axis", x1: x(t), y1: H - B, x2: x(t), y2: H - B + 4}));
      nodes.push(svgEl("text", {x: x(t), y: H - 3, "text-anchor": "middle"}, hhmm(t, step)));
    }
    (o.marks || []).forEach(function (m, i) {
      if (m.t < o.t0 || m.t > o.t1) return;
      var mx = x(m.t), right = mx > W / 2;  /* label on the side with room; one row each */
      nodes.push(svgEl("line", {"class": "mark" + (m.dashed ? " dashed" : ""), x1: mx, y1: T,
                                x2: mx, y2: H - B}));
      nodes.push(svgEl("text", {x: right ? mx - 3 : mx + 3, y: T + 12 + 14 * i,
                                "text-anchor": right ? "end" : "start"}, m.label));
    });
    o.lines.forEach(function (line) {
      if (!line.points.length) return;
      // a line breaks where its series has no bucket (a version that served nothing for a
      // while): never drawn straight across minutes it did not answer
      var runs = [[]];
      line.points.forEach(function (p, i) {
        if (i && o.gap && p[0] - line.points[i - 1][0] > o.gap) runs.push([]);
        runs[runs.length - 1].push(p);
      });
      runs.forEach(function (run) {
        var pts = run.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); });
        var attrs = {points: pts.join(" "), fill: "none", "stroke-width": 1.8, stroke: line.color};
        if (line.dashed) attrs["stroke-dasharray"] = "5 3";
        var poly = svgEl("polyline", attrs);
        poly.appendChild(svgEl("title", {}, line.label));
        nodes.push(poly);
        if (run.length === 1) {
          nodes.push(svgEl("circle", {cx: x(run[0][0]), cy: y(run[0][1]), r: 2.5,
                                      fill: line.color}));
        }
      });
    });
    svg.replaceChildren.apply(svg, nodes);
    svg.setAttribute("aria-label", o.title);
    svg.setAttribute("role", "img");
  }
  function legend(box, lines) {
    if (!box) return;
    box.replaceChildren.apply(box, lines.map(function (line) {
      var s = el("span", {});
      s.appendChild(el("i", {style: "background:" + line.color}));
      s.appendChild(document.createTextNode(line.label));
      return s;
    }));
  }
  function switchMarks(buckets) {  /* every bucket where another version began to answer most
                                      (a rollout, and a rollback after it) */
    var last = null, marks = [];
    for (var i = 0; i < buckets.length; i++) {
      var v = buckets[i].versions || {}, top = null;
      Object.keys(v).forEach(function (k) { if (top === null || v[k] > v[top]) top = k; });
      if (top === null) continue;
      if (last !== null && top !== last) marks.push({t: buckets[i].t, label: "switch to " + top});
      last = top;
    }
    return marks;
  }
  function drawHistory(box, h, target) {
    var now = Date.now() / 1000, step = h.bucket_s || 5;
    var mid = step / 2;
    /* the bucket still filling is left out: its few rows read as a drop in traffic (and its
       middle is in the future); it is drawn once it is whole, a refresh or two later */
    var b = (h.buckets || []).filter(function (x) { return x.t + step <= now; });
    /* the asked-for window, or from the first bucket when the service is younger (2 min at
       least), so a fresh start does not squeeze everything against the right edge */
    var t0 = now - 60 * (h.minutes || 15);
    if (b.length && b[0].t > t0) t0 = Math.min(b[0].t, now - 120);
    var labels = {};
    b.forEach(function (x) { Object.keys(x.versions || {}).forEach(function (k) { labels[k] = 1; }); });
    var names = Object.keys(labels).sort();
    var marks = [];
    if (target && target.rollout && target.rollout.started_at) {
      marks.push({t: Date.parse(target.rollout.started_at) / 1000, label: "rollout", dashed: true});
    }
    marks = marks.concat(switchMarks(b));
    var share = names.map(function (k) {
      return {label: k, color: color(k),
              points: b.map(function (x) { return [x.t + mid, (x.versions || {})[k] || 0]; })};
    });
    var counts = [
      {label: "requests", color: "#0969da", points: b.map(function (x) { return [x.t + mid, x.requests]; })},
      {label: "errors", color: "#cf222e", points: b.map(function (x) { return [x.t + mid, x.errors]; })}
    ];
    var lat = [{label: "p50 (all)", color: "#57606a", dashed: true,
                points: b.filter(function (x) { return x.p50_ms !== null; })
                         .map(function (x) { return [x.t + mid, x.p50_ms]; })}];
    names.forEach(function (k) {
      lat.push({label: "p99 " + k, color: color(k),
                points: b.filter(function (x) { return (x.p99_by_version || {})[k] != null; })
                         .map(function (x) { return [x.t + mid, x.p99_by_version[k]]; })});
    });
    var ttft = names.map(function (k) {
      return {label: "TTFT p50 " + k, color: color(k),
              points: b.filter(function (x) { return (x.ttft_p50_by_version || {})[k] != null; })
                       .map(function (x) { return [x.t + mid, x.ttft_p50_by_version[k]]; })};
    }).filter(function (line) { return line.points.length; });
    var maxOf = function (lines) {
      var m = 0;
      lines.forEach(function (l) { l.points.forEach(function (p) { if (p[1] > m) m = p[1]; }); });
      return m;
    };
    var charts = {
      share: {lines: share, ymax: 1, yfmt: function (v) { return fmt(v, "pct"); },
              title: "share of answers per version"},
      requests: {lines: counts, ymax: maxOf(counts), yfmt: function (v) { return fmt(Math.round(v)); },
                 title: "requests and errors per bucket"},
      latency: {lines: lat, ymax: maxOf(lat), yfmt: function (v) { return v ? fmt(v, "ms") : "0"; },
                title: "latency p50 and p99 per version"},
      ttft: {lines: ttft, ymax: maxOf(ttft), yfmt: function (v) { return v ? fmt(v, "ms") : "0"; },
             title: "time to first token p50 per version"}
    };
    /* a figure for streamed answers only once some bucket has them */
    box.querySelectorAll("[data-only=ttft]").forEach(function (f) { f.hidden = !ttft.length; });
    box.querySelectorAll("svg[data-chart]").forEach(function (svg) {
      var name = svg.getAttribute("data-chart"), c = charts[name];
      if (!c) return;
      c.t0 = t0; c.t1 = now; c.marks = marks; c.gap = 1.5 * (h.bucket_s || 5);
      drawChart(svg, c);
      legend(box.querySelector("[data-legend=" + name + "]"), c.lines);
    });
    box.hidden = false;
  }

  var lastTarget = null;
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
        lastTarget = t;
        update(box.closest("main") || box, t);
      });
      var charts = box.querySelector("[data-history]");
      if (charts) {
        get(charts.getAttribute("data-history"), function (h) { drawHistory(charts, h, lastTarget); });
      }
    });
  }
  if (document.querySelector("[data-live-list],[data-live-one]")) {
    tick();
    setInterval(tick, PERIOD_MS);
  }
  window.protonProbe = {fmt: fmt};  /* for tests and the console */
})();
