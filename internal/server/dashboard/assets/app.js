// holoproxy live dashboard: polls api/chain and renders it. No dependencies, no network
// access beyond this server; every text from the server is set with textContent.
"use strict";

(function () {
  const POLL_MS = 1000;
  const PHASES = ["dns", "connect", "tls", "ttfb", "transfer"];
  // The phases of a fetch through direct (the go command's run), from api/chain's spans.
  const STEP_PHASES = ["lookup", "vcs", "go", "transfer"];
  const PHASE_HELP = {
    lookup: "go-get discovery GETs (https://host/path?go-get=1)",
    vcs: "version control commands (git ls-remote, git fetch, ...)",
    go: "the rest of the go command's run: start-up, module cache, checks, zips",
    transfer: "reading the answer",
  };
  // Latency colour stops: milliseconds → colour, interpolated on a log scale.
  const STOPS = [
    [1, [31, 111, 139]],
    [10, [42, 157, 143]],
    [50, [138, 177, 125]],
    [200, [233, 196, 106]],
    [1000, [244, 162, 97]],
    [5000, [214, 40, 40]],
  ];
  const lastState = new Map();

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function short(name) {
    return String(name).replace(/^https?:\/\//, "");
  }

  function fmtMs(v) {
    if (v === undefined || v === null) return "–";
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    if (v >= 10) return Math.round(v) + " ms";
    return v.toFixed(1) + " ms";
  }

  function fmtBytes(n) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour12: false });
  }

  function ago(iso, now) {
    const s = Math.max(0, (new Date(now) - new Date(iso)) / 1000);
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function colour(ms) {
    const x = Math.log10(Math.max(ms, STOPS[0][0]));
    for (let i = 1; i < STOPS.length; i++) {
      const [m1, c1] = STOPS[i - 1];
      const [m2, c2] = STOPS[i];
      const x1 = Math.log10(m1), x2 = Math.log10(m2);
      if (x <= x2) {
        const t = (x - x1) / (x2 - x1);
        const c = c1.map((v, k) => Math.round(v + (c2[k] - v) * t));
        return "rgb(" + c.join(",") + ")";
      }
    }
    const c = STOPS[STOPS.length - 1][1];
    return "rgb(" + c.join(",") + ")";
  }

  function barClass(v) {
    return v >= 0.8 ? "" : v >= 0.5 ? "mid" : "low";
  }

  function renderChain(chain, routes) {
    const box = document.getElementById("chain");
    box.replaceChildren();
    const list = (c) => {
      for (const p of String(c || "").split(/([,|])/)) {
        if (p === "," || p === "|") box.append(el("span", "sep", p));
        else if (p) box.append(el("b", "", short(p)));
      }
    };
    list(chain);
    for (const r of routes || []) {
      const route = el("span", "route", " · " + r.patterns + " → ");
      route.title = "serve --route: these modules go to this chain alone";
      box.append(route);
      list(r.chain);
    }
  }

  function tile(k, v, s, meter) {
    const t = el("div", "tile");
    t.append(el("div", "k", k), el("div", "v", v));
    if (s) t.append(el("div", "s", s));
    if (meter !== undefined) {
      const m = el("div", "meter");
      const i = el("i");
      i.style.width = Math.round(meter * 100) + "%";
      m.append(i);
      t.append(m);
    }
    return t;
  }

  function renderTiles(doc) {
    const box = document.getElementById("tiles");
    box.replaceChildren();
    const c = doc.cache;
    if (c) {
      box.append(
        tile("Cache hit rate", Math.round(c.hit_rate * 100) + "%", c.hits + " hits · " + c.misses + " misses", c.hit_rate),
        tile("Served", fmtBytes(c.bytes_served), (c.stale ? c.stale + " stale · " : "") + c.negative + " negative"),
      );
    }
    const ups = doc.upstreams || [];
    const healthy = ups.filter((u) => u.state === "healthy").length;
    box.append(tile("Upstreams healthy", healthy + " / " + ups.length, ups.length ? "" : "none configured", ups.length ? healthy / ups.length : 0));
    const h = doc.hedges;
    if (h) {
      const rate = h.attempts ? h.fired / h.attempts : 0;
      box.append(tile("Hedged", h.fired, (rate * 100).toFixed(1) + "% of " + h.attempts + " · " + h.capped + " capped"));
    }
    const p = doc.prefetch;
    if (p) {
      box.append(tile("Prefetched", p.fetched, p.queued + " queued · " + p.dropped + " dropped · " + p.failed + " failed"));
    }
    const dr = doc.direct;
    if (dr) {
      const asked = dr.ok + dr.not_found + dr.failed + dr.timed_out;
      const bad = dr.failed + dr.timed_out;
      const detail = dr.runs + " go runs · " + dr.running + " / " + dr.jobs + " running · " + dr.not_found + " not found" +
        (bad ? " · " + dr.failed + " failed · " + dr.timed_out + " timed out" : "");
      const d = tile("Direct (VCS)", asked ? dr.ok + " / " + asked + " fetched" : "no fetch yet", detail, asked ? dr.ok / asked : undefined);
      d.id = "direct-tile";
      if (dr.last_error) d.title = "last failure: " + dr.last_error;
      if (dr.last_failed) d.classList.add("alert");
      box.append(d);
    }
    const st = doc.store;
    if (st) {
      const bound = st.max_bytes ? fmtBytes(st.size_bytes) + " of " + fmtBytes(st.max_bytes) : "no size bound";
      const evicted = st.evicted ? " · " + st.evicted + " zips evicted (" + fmtBytes(st.evicted_bytes) + ")" : "";
      const t = st.unwritable
        ? tile("Cache disk", "refuses files", st.unstored + " answers relayed unstored · " + bound)
        : tile("Cache disk", st.max_bytes ? fmtBytes(st.size_bytes) : "storing", bound + evicted + (st.unstored ? " · " + st.unstored + " relayed unstored" : ""),
            st.max_bytes ? Math.min(1, st.size_bytes / st.max_bytes) : undefined);
      t.id = "store-tile";
      if (st.unwritable) t.classList.add("alert");
      box.append(t);
      const sh = st.shared;
      if (sh) {
        const looked = sh.hits + sh.misses;
        const rest = " · " + sh.uploads + " uploaded" + (sh.refused ? " · " + sh.refused + " refused" : "") +
          (sh.errors + sh.upload_errors ? " · " + (sh.errors + sh.upload_errors) + " errors" : "");
        const s = sh.down
          ? tile("Shared cache", "paused", sh.bucket + " failed: serving from disk and upstream" + rest)
          : tile("Shared cache", sh.hits + " hits", sh.bucket + " · " + (looked ? Math.round(sh.hits / looked * 100) + "% of " + looked + " disk misses" : "no disk miss yet") + rest,
              looked ? sh.hits / looked : undefined);
        s.id = "shared-tile";
        if (sh.down) s.classList.add("alert");
        box.append(s);
      }
    }
  }

  function renderUpstreams(doc) {
    const box = document.getElementById("upstreams");
    const ups = doc.upstreams || [];
    if (!ups.length) return;
    box.replaceChildren();
    const byUp = new Map();
    for (const t of doc.transitions || []) {
      if (!byUp.has(t.upstream)) byUp.set(t.upstream, []);
      byUp.get(t.upstream).push(t);
    }
    for (const u of ups) {
      const card = el("div", "card state-" + u.state);
      card.dataset.upstream = u.name;
      const prev = lastState.get(u.name);
      if (prev !== undefined && prev !== u.state) card.classList.add("flash");
      lastState.set(u.name, u.state);

      const head = el("div", "card-head");
      const name = el("span", "name", short(u.name));
      name.title = u.name;
      head.append(name, el("span", "state " + u.state, u.state));
      card.append(head);

      const sc = el("div", "score");
      sc.append(el("span", "num", u.score.toFixed(2)), el("span", "since", u.state + " for " + ago(u.since, doc.now)));
      card.append(sc);

      const comps = el("div", "comps");
      for (const k of ["connect", "ttfb", "errors", "checksum"]) {
        const v = u.components[k];
        const bar = el("div", "bar");
        const i = el("i", barClass(v));
        i.style.width = Math.round(v * 100) + "%";
        bar.append(i);
        const w = el("span", "w", "×" + u.weights[k].toFixed(2));
        w.title = "effective weight";
        comps.append(el("span", "l", k), bar, el("span", "n", v.toFixed(2)), w);
      }
      card.append(comps);

      const meta = el("div", "meta");
      const add = (label, value) => { meta.append(label + " "); meta.append(el("b", "", value)); meta.append("   "); };
      add("p50", fmtMs(u.ttfb_p50_ms));
      add("p95", fmtMs(u.ttfb_p95_ms));
      add("req", Math.round(u.requests));
      add("fail", Math.round(u.failures * 10) / 10);
      if (u.verified) add("verified", Math.round(u.verified) + " (" + Math.round(u.checksum_failures) + " bad)");
      card.append(meta);

      if (u.retry_at) {
        const secs = Math.max(0, (new Date(u.retry_at) - new Date(doc.now)) / 1000);
        card.append(el("div", "retry", "circuit open · half-open in " + secs.toFixed(1) + " s (backoff " + fmtMs(u.backoff_ms) + ")"));
      }
      const classes = Object.entries(u.errors_by_class || {}).sort((a, b) => b[1] - a[1]);
      if (classes.length) {
        const cl = el("div", "classes");
        for (const [c, n] of classes.slice(0, 5)) cl.append(el("span", "", c + " ×" + n));
        card.append(cl);
      }
      const trs = (byUp.get(u.name) || []).slice(0, 3);
      if (trs.length) {
        const ul = el("ul", "trans");
        for (const t of trs) {
          const li = el("li");
          li.title = t.reason;
          li.append(el("span", "t", fmtTime(t.at)), el("span", "pill " + t.from, t.from), "→", el("span", "pill " + t.to, t.to));
          ul.append(li);
        }
        card.append(ul);
      }
      box.append(card);
    }
  }

  function renderHeatmap(doc) {
    const hm = doc.heatmap;
    const box = document.getElementById("heatmap");
    box.replaceChildren();
    if (!hm || !hm.rows) return;
    box.style.gridTemplateColumns = "max-content repeat(" + hm.columns + ", minmax(6px, 1fr))";
    const bucketS = hm.bucket_ms / 1000;
    document.getElementById("heat-sub").textContent =
      "p90 per " + bucketS + " s bucket, last " + Math.round((hm.columns * bucketS) / 60) + " min; hover a cell for details";
    let group = null;
    for (const row of hm.rows) {
      if (row.upstream !== group) {
        group = row.upstream;
        const g = el("div", "grp", short(group));
        g.style.gridColumn = "1 / -1";
        box.append(g);
      }
      const lab = el("div", "lab", row.phase);
      lab.dataset.upstream = row.upstream;
      if (row.upstream === "direct" && PHASE_HELP[row.phase]) lab.title = PHASE_HELP[row.phase];
      box.append(lab);
      row.cells.forEach((c, i) => {
        const cell = el("div", "cell");
        cell.dataset.upstream = row.upstream;
        cell.dataset.phase = row.phase;
        if (c) {
          cell.classList.add("v");
          const at = new Date(new Date(hm.start).getTime() + i * hm.bucket_ms);
          if (row.phase === "errors") {
            const a = Math.min(1, 0.35 + c.errors / 10);
            cell.style.background = "rgba(255, 93, 93, " + a + ")";
            cell.title = short(row.upstream) + " · " + fmtTime(at) + " · " + c.errors + " failed";
          } else {
            cell.style.background = colour(c.p90_ms);
            cell.title = short(row.upstream) + " · " + row.phase + " · " + fmtTime(at) + " · p90 " + fmtMs(c.p90_ms) + " over " + c.n +
              (row.upstream === "direct" && PHASE_HELP[row.phase] ? " · " + PHASE_HELP[row.phase] : "");
          }
        }
        box.append(cell);
      });
    }
    box.append(el("div", "lab", ""));
    const minutes = (hm.columns * hm.bucket_ms) / 60000;
    for (let i = 0; i < hm.columns; i++) {
      const ax = el("div", "axis");
      const left = ((hm.columns - i) * hm.bucket_ms) / 60000;
      if (i % Math.max(1, Math.round(hm.columns / minutes)) === 0) ax.textContent = "−" + Math.round(left) + "m";
      box.append(ax);
    }
  }

  function renderLegends() {
    const legend = document.getElementById("legend");
    legend.replaceChildren();
    legend.append(el("span", "", "1 ms"));
    const ramp = el("div", "ramp");
    for (let i = 0; i <= 24; i++) {
      const ms = Math.pow(10, (i / 24) * Math.log10(5000));
      const c = el("i");
      c.style.background = colour(ms);
      ramp.append(c);
    }
    legend.append(ramp, el("span", "", "≥ 5 s"));
    const err = el("span");
    const sw = el("span", "sw");
    sw.style.background = "rgba(255, 93, 93, .8)";
    err.append(sw, "failed exchanges");
    legend.append(err);

    const pl = document.getElementById("phase-legend");
    pl.replaceChildren();
    for (const p of PHASES.concat(STEP_PHASES.filter((q) => !PHASES.includes(q)))) {
      const s = el("span");
      const sw2 = el("span", "sw");
      sw2.style.background = "var(--" + p + ")";
      s.append(sw2, p);
      pl.append(s);
    }
  }

  function renderSlowest(doc) {
    const box = document.getElementById("slowest");
    const reqs = doc.slowest || [];
    if (!reqs.length) return;
    box.replaceChildren();
    const maxT = Math.max(...reqs.map((r) => r.total_ms), 1);
    for (const r of reqs) {
      const row = el("div", "wf");
      const what = el("div", "what");
      what.title = r.spans ? r.upstream + r.path + " (fetched by the go command)"
        : r.upstream + r.path + (r.reused ? " (reused connection)" : " (new connection)") + (r.proto ? " " + r.proto : "");
      const l1 = el("div", "l1");
      l1.append(el("span", "kind", r.kind || "?"), el("span", "", r.path.replace(/^\//, "")));
      const l2 = el("div", "l2");
      l2.append(el("span", "up", short(r.upstream)));
      if (r.err_class) l2.append(el("span", "err", " · ✕ " + r.err_class));
      else if (r.status >= 500 || r.status === 429) l2.append(el("span", "err", " · " + r.status));
      else if (r.status && r.status !== 200) l2.append(el("span", "up", " · " + r.status));
      else if (r.spans) l2.append(el("span", "up", " · go command" + (r.bytes ? " · " + fmtBytes(r.bytes) : "")));
      else l2.append(el("span", "up", " · " + (r.reused ? "reused" : "new conn") + (r.bytes ? " · " + fmtBytes(r.bytes) : "")));
      what.append(l1, l2);
      const track = el("div", "track");
      if (r.spans) {
        // direct: the go command's phases where they happened, the slowest step named.
        row.classList.add("direct");
        if (r.slow_step) what.title += " · slowest step: " + r.slow_step + " (" + fmtMs(r.slow_step_ms) + ")";
        let end = 0;
        r.spans.forEach((sp, i) => {
          const last = i === r.spans.length - 1;
          const seg = el("div", "seg " + sp.phase + (r.err_class && last ? " failed" : ""));
          seg.style.left = (sp.from_ms / maxT) * 100 + "%";
          seg.style.width = ((sp.to_ms - sp.from_ms) / maxT) * 100 + "%";
          seg.title = sp.phase + " " + fmtMs(sp.to_ms - sp.from_ms) + (PHASE_HELP[sp.phase] ? " · " + PHASE_HELP[sp.phase] : "") +
            (r.err_class && last ? " · " + r.err_class : "");
          track.append(seg);
          end = Math.max(end, sp.to_ms);
        });
        failedTail(track, r, end, maxT);
        row.append(what, track, el("div", "tot", fmtMs(r.total_ms)));
        box.append(row);
        continue;
      }
      let off = 0;
      for (const p of PHASES) {
        const d = r[p + "_ms"] || 0;
        if (d <= 0) continue;
        const last = PHASES.slice(PHASES.indexOf(p) + 1).every((q) => !(r[q + "_ms"] > 0));
        const seg = el("div", "seg " + p + (r.err_class && last ? " failed" : ""));
        seg.style.left = (off / maxT) * 100 + "%";
        seg.style.width = (d / maxT) * 100 + "%";
        seg.title = p + " " + fmtMs(d) + (r.err_class && last ? " · " + r.err_class : "");
        track.append(seg);
        off += d;
      }
      failedTail(track, r, off, maxT);
      row.append(what, track, el("div", "tot", fmtMs(r.total_ms)));
      box.append(row);
    }
  }

  // failedTail marks the part of a failed request after its last phase (from ms on).
  function failedTail(track, r, from, maxT) {
    if (!r.err_class || r.total_ms <= from) return;
    const seg = el("div", "seg failed");
    seg.style.left = (from / maxT) * 100 + "%";
    seg.style.width = ((r.total_ms - from) / maxT) * 100 + "%";
    seg.title = r.err_class + " after " + fmtMs(r.total_ms);
    track.append(seg);
  }

  function renderTransitions(doc) {
    const box = document.getElementById("transitions");
    const trs = doc.transitions || [];
    if (!trs.length) return;
    box.replaceChildren();
    for (const t of trs.slice(0, 30)) {
      const li = el("li");
      li.append(el("span", "t", fmtTime(t.at)), el("span", "u", short(t.upstream) + " "),
        el("span", "pill " + t.from, t.from), " → ", el("span", "pill " + t.to, t.to),
        el("span", "why", t.reason + " · score " + t.score.toFixed(2)));
      box.append(li);
    }
  }

  function render(doc) {
    document.getElementById("version").textContent = doc.version ? " " + doc.version : "";
    renderChain(doc.chain, doc.routes);
    renderTiles(doc);
    renderUpstreams(doc);
    renderHeatmap(doc);
    renderSlowest(doc);
    renderTransitions(doc);
    const live = document.getElementById("live");
    live.classList.remove("down");
    document.getElementById("updated").textContent = "live · " + fmtTime(doc.now);
    document.body.dataset.updated = doc.now;
  }

  async function poll() {
    let wait = POLL_MS;
    try {
      const resp = await fetch("api/chain", { cache: "no-store" });
      if (!resp.ok) throw new Error("status " + resp.status);
      render(await resp.json());
    } catch (e) {
      document.getElementById("live").classList.add("down");
      document.getElementById("updated").textContent = "disconnected (" + e.message + "), retrying";
      wait = 2 * POLL_MS;
    }
    setTimeout(poll, wait);
  }

  renderLegends();
  poll();
})();
