// dhatc's flame graph of a DHAT file: the program points merged into a tree by
// their common frames, drawn as an icicle (the root at the top) on a canvas.
//
// The data (the <script id="dhatc-data"> element) is compact: a frame table and
// one array per figure, one entry per program point, with each PP's frames
// (innermost first, as in the DHAT file) concatenated in `fs` and their counts
// in `n`.  From it the page builds, once per tree orientation, a tree held in
// typed arrays (a node is an index), and once per metric the order of each
// node's children (widest first) and each node's x offset in metric units.
// Drawing then walks only the nodes at least a pixel wide, so that 100,000
// PPs stay responsive.  Nothing is fetched: the page works offline.
//
// The state (metric, orientation, search, zoom) is kept in the URL's hash, so
// a reload or a shared link shows the same view; `window.dhatcFlamegraph`
// exposes a few read-only helpers for scripts (dhatc's tests use them).
"use strict";

(function () {
  const D = JSON.parse(document.getElementById("dhatc-data").textContent);
  const kRowHeight = 18;
  const kMinWidth = 1; // CSS pixels: narrower nodes are neither drawn nor hit
  const kLabelMinWidth = 28;
  // Canvas heights past this many device pixels fail in some browsers.
  const kMaxCanvasPixels = 32000;

  // Number formatting as DHAT's viewer does it (dh_view.js).
  const kDFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  const kPFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2, style: "percent" });

  const bytesUnit = D.bsu;
  const blocksUnit = D.bksu;
  const byteUnit = D.bu;

  // The figures of the page's menu: key of the data array, label, unit.
  const kMetrics = [
    { name: "total_bytes", key: "tb", label: `Total (${bytesUnit})`, unit: bytesUnit },
    { name: "total_blocks", key: "tbk", label: `Total (${blocksUnit})`, unit: blocksUnit },
  ];
  if (D.heap) {
    kMetrics.push(
      { name: "gmax_bytes", key: "gb", label: `At t-gmax (${bytesUnit})`, unit: bytesUnit },
      { name: "gmax_blocks", key: "gbk", label: `At t-gmax (${blocksUnit})`, unit: blocksUnit },
      { name: "end_bytes", key: "eb", label: `At t-end (${bytesUnit})`, unit: bytesUnit },
      { name: "end_blocks", key: "ebk", label: `At t-end (${blocksUnit})`, unit: blocksUnit });
  }
  // Every array that is summed along the tree (mb/mbk are shown for single PPs only).
  const kSumKeys = D.heap ? ["tb", "tbk", "tl", "gb", "gbk", "eb", "ebk"] : ["tb", "tbk"];

  const $ = (id) => document.getElementById(id);
  const canvas = $("fg-canvas");
  const ctx = canvas.getContext("2d");
  const tooltip = $("fg-tooltip");

  // --- Frames --------------------------------------------------------------

  const nFrames = D.ftbl.length;
  // Short labels for the boxes: no Valgrind/crate address, file names without
  // their directory.  The tooltip shows the frame in full.
  const shortLabels = D.ftbl.map((f) => {
    let s = f.replace(/^0x[0-9A-Fa-f]+: /, "");
    return s.replace(/ \((?:[^()]*\/)?([^()/]+:[0-9?]+(?::[0-9]+)?)\)$/, " ($1)");
  });
  // Frames with a source location get warm colours, allocator entries and
  // frames without a location cool ones, each stable for its name.
  const frameColors = D.ftbl.map((f) => {
    let h = 0;
    for (let i = 0; i < f.length; i++) {
      h = (h * 31 + f.charCodeAt(i)) | 0;
    }
    const r = ((h >>> 0) % 1000) / 1000;
    if (/\(.+:[0-9?]+(?::[0-9]+)?\)$/.test(f)) {
      return `hsl(${Math.round(8 + 42 * r)}, ${Math.round(75 + 20 * r)}%, ${Math.round(58 + 10 * r)}%)`;
    }
    return `hsl(${Math.round(185 + 30 * r)}, 45%, ${Math.round(62 + 10 * r)}%)`;
  });

  // --- The tree ------------------------------------------------------------

  // Built for one orientation: "callers" puts the outermost frame of each PP
  // just below the root (a flame graph); "allocation" puts its innermost
  // frame there, as DHAT's viewer does.
  function buildTree(order) {
    const nPPs = D.n.length;
    const cap = D.fs.length + 1;
    const parent = new Int32Array(cap);
    const frame = new Int32Array(cap);
    const depth = new Int32Array(cap);
    const selfPP = new Int32Array(cap).fill(-1);
    const ppCount = new Int32Array(cap);
    const sums = {};
    for (const k of kSumKeys) {
      sums[k] = new Float64Array(cap);
    }
    const index = new Map(); // parent * nFrames + frame -> child
    parent[0] = -1;
    frame[0] = -1;
    let count = 1;
    let maxDepth = 0;
    let off = 0;
    for (let p = 0; p < nPPs; p++) {
      const len = D.n[p];
      let node = 0;
      ppCount[0]++;
      for (const k of kSumKeys) {
        sums[k][0] += D[k][p];
      }
      for (let j = 0; j < len; j++) {
        const f = order === "callers" ? D.fs[off + len - 1 - j] : D.fs[off + j];
        const key = node * nFrames + f;
        let child = index.get(key);
        if (child === undefined) {
          child = count++;
          index.set(key, child);
          parent[child] = node;
          frame[child] = f;
          depth[child] = depth[node] + 1;
          if (depth[child] > maxDepth) {
            maxDepth = depth[child];
          }
        }
        node = child;
        ppCount[node]++;
        for (const k of kSumKeys) {
          sums[k][node] += D[k][p];
        }
      }
      selfPP[node] = p;
      off += len;
    }
    // Children in one array (parents have smaller ids than their children).
    const kidStart = new Int32Array(count + 1);
    for (let c = 1; c < count; c++) {
      kidStart[parent[c] + 1]++;
    }
    for (let i = 0; i < count; i++) {
      kidStart[i + 1] += kidStart[i];
    }
    const fill = kidStart.slice(0, count);
    const kids = new Int32Array(Math.max(count - 1, 0));
    for (let c = 1; c < count; c++) {
      kids[fill[parent[c]]++] = c;
    }
    return { count, parent, frame, depth, selfPP, ppCount, sums, kidStart, kids, maxDepth,
             layouts: {} };
  }

  // For one metric: each node's children widest first (ties in first-seen
  // order), and each node's x offset within the root, in metric units.
  function layout(tree, metric) {
    let l = tree.layouts[metric.key];
    if (l) {
      return l;
    }
    const v = tree.sums[metric.key];
    const order = new Int32Array(tree.kids);
    const x = new Float64Array(tree.count);
    for (let n = 0; n < tree.count; n++) {
      const a = tree.kidStart[n];
      const b = tree.kidStart[n + 1];
      if (b - a > 1) {
        const slice = Array.from(order.subarray(a, b));
        slice.sort((p, q) => (v[q] - v[p]) || (p - q));
        order.set(slice, a);
      }
      let cur = x[n];
      for (let i = a; i < b; i++) {
        x[order[i]] = cur;
        cur += v[order[i]];
      }
    }
    l = tree.layouts[metric.key] = { order, x, v };
    return l;
  }

  // --- State ---------------------------------------------------------------

  const trees = {};
  const state = {
    metric: kMetrics[0],
    order: "callers",
    search: "",
    zoom: 0,
    frameMatch: null, // Uint8Array over frames, null without a search
  };
  let lastDrawn = 0;
  let cssWidth = 0;

  function tree() {
    if (!trees[state.order]) {
      trees[state.order] = buildTree(state.order);
    }
    return trees[state.order];
  }

  function metricNamed(name) {
    return kMetrics.find((m) => m.name === name);
  }

  function defaultMetric() {
    return metricNamed(D.metric) || kMetrics[0];
  }

  // The frames from the root down to `node`, as frame strings.
  function pathOf(t, node) {
    const path = [];
    for (let n = node; n > 0; n = t.parent[n]) {
      path.push(D.ftbl[t.frame[n]]);
    }
    return path.reverse();
  }

  // The node reached from the root by `frames`, or -1.
  function findPath(frames) {
    const t = tree();
    let node = 0;
    for (const f of frames) {
      let next = -1;
      for (let i = t.kidStart[node]; i < t.kidStart[node + 1]; i++) {
        if (D.ftbl[t.frame[t.kids[i]]] === f) {
          next = t.kids[i];
          break;
        }
      }
      if (next < 0) {
        return -1;
      }
      node = next;
    }
    return node;
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (state.metric !== defaultMetric()) {
      params.set("metric", state.metric.name);
    }
    if (state.order !== "callers") {
      params.set("order", state.order);
    }
    if (state.search) {
      params.set("search", state.search);
    }
    for (const f of pathOf(tree(), state.zoom)) {
      params.append("zoom", f);
    }
    const hash = params.toString();
    const url = location.href.replace(/#.*$/, "") + (hash ? "#" + hash : "");
    try {
      history.replaceState(null, "", url);
    } catch (e) {
      // Some file:// contexts refuse; the view still works.
    }
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.metric = metricNamed(params.get("metric")) || defaultMetric();
    state.order = params.get("order") === "allocation" ? "allocation" : "callers";
    setSearch(params.get("search") || "");
    const zoom = findPath(params.getAll("zoom"));
    state.zoom = zoom > 0 ? zoom : 0;
    $("fg-metric").value = state.metric.name;
    $("fg-order").value = state.order;
    $("fg-search").value = state.search;
  }

  function setSearch(text) {
    state.search = text;
    if (!text) {
      state.frameMatch = null;
      return;
    }
    const needle = text.toLowerCase();
    const m = new Uint8Array(nFrames);
    for (let f = 0; f < nFrames; f++) {
      m[f] = D.ftbl[f].toLowerCase().includes(needle) ? 1 : 0;
    }
    state.frameMatch = m;
  }

  // The metric's total over the matching nodes, each counted once: a node
  // below a matching node is already part of it (so recursion counts once).
  function matchedTotal(t, l) {
    const covered = new Uint8Array(t.count);
    let total = 0;
    for (let n = 1; n < t.count; n++) {
      if (covered[t.parent[n]]) {
        covered[n] = 1;
      } else if (state.frameMatch[t.frame[n]]) {
        covered[n] = 1;
        total += l.v[n];
      }
    }
    return total;
  }

  // --- Text as the viewer shows it ---------------------------------------------

  const div = (a, b) => (b === 0 ? 0 : a / b);
  const perc = (a, b) => kPFormat.format(div(a, b));
  const perMtu = (a) => `${kDFormat.format(div(1000000 * a, D.te))}/${D.Mtu}`;
  const bytes = (a) => `${kDFormat.format(a)} ${bytesUnit}`;
  const blocks = (a) => `${kDFormat.format(a)} ${blocksUnit}`;
  const time = (a) => `${kDFormat.format(a)} ${D.tu}`;

  function nodeText(t, node) {
    const s = t.sums;
    const r = 0;
    const lines = [];
    if (node === 0) {
      lines.push("[root]: all program points");
    } else {
      lines.push(D.ftbl[t.frame[node]]);
    }
    const tb = s.tb[node];
    const tbk = s.tbk[node];
    let total = `  Total:     ${bytes(tb)} (${perc(tb, s.tb[r])}, ${perMtu(tb)}) in ` +
      `${blocks(tbk)} (${perc(tbk, s.tbk[r])}, ${perMtu(tbk)}), avg size ${bytes(div(tb, tbk))}`;
    if (D.heap) {
      const lt = div(s.tl[node], tbk);
      total += `, avg lifetime ${time(lt)} (${perc(lt, D.te)} of program duration)`;
    }
    lines.push(total);
    if (D.heap) {
      const pp = t.selfPP[node];
      // The viewer shows a PP's own max for a PP alone (its figures cannot be summed).
      if (pp >= 0 && t.ppCount[node] === 1) {
        lines.push(`  Max:       ${bytes(D.mb[pp])} in ${blocks(D.mbk[pp])}, ` +
          `avg size ${bytes(div(D.mb[pp], D.mbk[pp]))}`);
      }
      for (const [title, b, k] of [["At t-gmax: ", "gb", "gbk"], ["At t-end:  ", "eb", "ebk"]]) {
        const vb = s[b][node];
        const vk = s[k][node];
        lines.push(`  ${title}${bytes(vb)} (${perc(vb, s[b][r])}) in ${blocks(vk)} ` +
          `(${perc(vk, s[k][r])}), avg size ${bytes(div(vb, vk))}`);
      }
    }
    const n = t.ppCount[node];
    lines.push(`  ${kDFormat.format(n)} program point${n === 1 ? "" : "s"}` +
      (node > 0 ? `, depth ${t.depth[node]}` : ""));
    return lines.join("\n");
  }

  function summaryText() {
    const t = tree();
    const s = t.sums;
    const lines = [`Total:     ${bytes(s.tb[0])} in ${blocks(s.tbk[0])}`];
    if (D.heap) {
      lines.push(`At t-gmax: ${bytes(s.gb[0])} in ${blocks(s.gbk[0])}`);
      lines.push(`At t-end:  ${bytes(s.eb[0])} in ${blocks(s.ebk[0])}`);
    }
    lines.push(`${kDFormat.format(D.n.length)} program points`);
    return lines.join("\n");
  }

  // --- Drawing -------------------------------------------------------------

  function resize() {
    const t = tree();
    const dpr = window.devicePixelRatio || 1;
    const rows = Math.min(t.maxDepth + 1, Math.floor(kMaxCanvasPixels / (kRowHeight * dpr)));
    // The height first: it decides whether the page has a scroll bar, and so the width.
    canvas.style.height = `${rows * kRowHeight}px`;
    cssWidth = Math.max(canvas.parentElement.clientWidth, 200);
    canvas.style.width = `${cssWidth}px`;
    canvas.width = Math.round(cssWidth * dpr);
    canvas.height = Math.round(rows * kRowHeight * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  // Geometry of a node in the current view, or null when it is not drawn.
  function boxOf(node) {
    const t = tree();
    const l = layout(t, state.metric);
    const z = state.zoom;
    const zv = l.v[z];
    if (zv <= 0 || node < 0 || node >= t.count) {
      return null;
    }
    const y = t.depth[node] * kRowHeight;
    if (isAncestorOrSelf(t, node, z)) {
      return { x: 0, y, w: cssWidth, h: kRowHeight };
    }
    if (!isAncestorOrSelf(t, z, node)) {
      return null;
    }
    const scale = cssWidth / zv;
    const w = l.v[node] * scale;
    if (w < kMinWidth) {
      return null;
    }
    return { x: (l.x[node] - l.x[z]) * scale, y, w, h: kRowHeight };
  }

  function isAncestorOrSelf(t, a, node) {
    for (let n = node; n >= 0; n = t.parent[n]) {
      if (n === a) {
        return true;
      }
    }
    return false;
  }

  function drawBox(t, node, x, y, w, dimmed) {
    let color;
    if (node === 0) {
      color = "#d8d8d8";
    } else if (state.frameMatch && state.frameMatch[t.frame[node]]) {
      color = "#c24ee6";
    } else {
      color = frameColors[t.frame[node]];
    }
    ctx.fillStyle = color;
    ctx.globalAlpha = dimmed ? 0.55 : 1;
    ctx.fillRect(x, y, Math.max(w - 0.5, 0.5), kRowHeight - 1);
    ctx.globalAlpha = 1;
    if (w >= kLabelMinWidth) {
      const label = node === 0 ? "all program points" : shortLabels[t.frame[node]];
      const room = Math.floor((w - 6) / charWidth);
      if (room >= 2) {
        ctx.fillStyle = "#111";
        ctx.fillText(label.length > room ? label.slice(0, room - 1) + "…" : label, x + 3, y + 13);
      }
    }
  }

  let charWidth = 7;

  function draw() {
    const t = tree();
    const l = layout(t, state.metric);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = "12px ui-monospace, Menlo, Consolas, monospace";
    charWidth = ctx.measureText("mmmmmmmmmm").width / 10 || 7;
    const z = state.zoom;
    const zv = l.v[z];
    const rows = Math.floor(canvas.height / (window.devicePixelRatio || 1) / kRowHeight);
    let drawn = 0;
    const empty = $("fg-empty");
    if (zv <= 0) {
      empty.textContent = `Nothing to draw: the total ${state.metric.label} is 0.`;
      empty.hidden = false;
      lastDrawn = 0;
      return;
    }
    empty.hidden = true;
    // The zoomed node's ancestors, full width, dimmed: click one to zoom out.
    for (let n = t.parent[z]; n >= 0; n = t.parent[n]) {
      drawBox(t, n, 0, t.depth[n] * kRowHeight, cssWidth, true);
      drawn++;
    }
    const scale = cssWidth / zv;
    const x0 = l.x[z];
    const stack = [z];
    while (stack.length) {
      const n = stack.pop();
      const w = l.v[n] * scale;
      if (w < kMinWidth || t.depth[n] >= rows) {
        continue; // and so are all its descendants, narrower still or deeper
      }
      drawBox(t, n, (l.x[n] - x0) * scale, t.depth[n] * kRowHeight, w, false);
      drawn++;
      for (let i = t.kidStart[n]; i < t.kidStart[n + 1]; i++) {
        stack.push(l.order[i]);
      }
    }
    lastDrawn = drawn;
  }

  function updateStatus() {
    const t = tree();
    const l = layout(t, state.metric);
    const m = state.metric;
    $("fg-metric-total").textContent = `${m.label}: ${kDFormat.format(l.v[0])} ${m.unit}.`;
    if (state.frameMatch) {
      const matched = matchedTotal(t, l);
      $("fg-match").textContent = `Matched "${state.search}": ${kDFormat.format(matched)} ` +
        `${m.unit} (${perc(matched, l.v[0])} of the total).`;
    } else {
      $("fg-match").textContent = "";
    }
    if (state.zoom > 0) {
      const v = l.v[state.zoom];
      $("fg-zoom").textContent = `Zoomed into ${D.ftbl[t.frame[state.zoom]]}: ` +
        `${kDFormat.format(v)} ${m.unit} (${perc(v, l.v[0])} of the total).`;
    } else {
      $("fg-zoom").textContent = "";
    }
  }

  function render() {
    draw();
    updateStatus();
    writeHash();
  }

  // --- Events --------------------------------------------------------------

  // The node under a point of the canvas (CSS pixels), or -1.
  function nodeAt(px, py) {
    const t = tree();
    const l = layout(t, state.metric);
    const z = state.zoom;
    const zv = l.v[z];
    const row = Math.floor(py / kRowHeight);
    if (zv <= 0 || px < 0 || px >= cssWidth || row < 0) {
      return -1;
    }
    if (row <= t.depth[z]) {
      let n = z;
      while (t.depth[n] > row) {
        n = t.parent[n];
      }
      return n;
    }
    const scale = cssWidth / zv;
    const target = l.x[z] + px / scale;
    let n = z;
    while (t.depth[n] < row) {
      // Children are laid out left to right in `order`: binary search.
      let lo = t.kidStart[n];
      let hi = t.kidStart[n + 1] - 1;
      let found = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const c = l.order[mid];
        if (target < l.x[c]) {
          hi = mid - 1;
        } else if (target >= l.x[c] + l.v[c]) {
          lo = mid + 1;
        } else {
          found = c;
          break;
        }
      }
      if (found < 0) {
        return -1;
      }
      n = found;
    }
    return l.v[n] * scale >= kMinWidth ? n : -1;
  }

  function eventPoint(ev) {
    const r = canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  canvas.addEventListener("click", (ev) => {
    const n = nodeAt(...eventPoint(ev));
    if (n >= 0) {
      zoomTo(n);
    }
  });

  canvas.addEventListener("mousemove", (ev) => {
    const n = nodeAt(...eventPoint(ev));
    if (n < 0) {
      tooltip.hidden = true;
      return;
    }
    tooltip.textContent = nodeText(tree(), n);
    tooltip.hidden = false;
    const pad = 14;
    const w = tooltip.offsetWidth;
    const h = tooltip.offsetHeight;
    let x = ev.clientX + pad;
    let y = ev.clientY + pad;
    if (x + w > window.innerWidth) {
      x = Math.max(0, ev.clientX - pad - w);
    }
    if (y + h > window.innerHeight) {
      y = Math.max(0, ev.clientY - pad - h);
    }
    tooltip.style.left = `${x}px`;
    tooltip.style.top = `${y}px`;
  });

  canvas.addEventListener("mouseleave", () => {
    tooltip.hidden = true;
  });

  function zoomTo(node) {
    state.zoom = node;
    tooltip.hidden = true;
    render();
  }

  $("fg-metric").addEventListener("change", (ev) => {
    state.metric = metricNamed(ev.target.value) || kMetrics[0];
    render();
  });

  $("fg-order").addEventListener("change", (ev) => {
    state.order = ev.target.value === "allocation" ? "allocation" : "callers";
    // A path of one tree is no path of the other: zoom out.
    state.zoom = 0;
    resize();
    render();
  });

  $("fg-search").addEventListener("input", (ev) => {
    setSearch(ev.target.value);
    render();
  });

  $("fg-reset").addEventListener("click", () => zoomTo(0));

  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && document.activeElement !== $("fg-search")) {
      zoomTo(0);
    }
  });

  // The width changes with the window, and when a scroll bar comes or goes.
  function onResize() {
    if (canvas.parentElement.clientWidth !== cssWidth) {
      resize();
      draw();
    }
  }
  window.addEventListener("resize", onResize);
  if (window.ResizeObserver) {
    new ResizeObserver(onResize).observe(canvas.parentElement);
  }

  window.addEventListener("hashchange", () => {
    readHash();
    resize();
    render();
  });

  // --- Start ---------------------------------------------------------------

  document.title = `dhatc flame graph - ${D.name}`;
  $("fg-title").textContent = `Flame graph of ${D.name} (${D.mode})`;
  $("fg-command").textContent = `Command: ${D.cmd}\nPID:     ${D.pid}`;
  const select = $("fg-metric");
  for (const m of kMetrics) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.label;
    select.appendChild(option);
  }
  readHash();
  $("fg-summary").textContent = summaryText();
  resize();
  render();

  window.dhatcFlamegraph = {
    // Read-only views of the page's state, for scripts and tests.
    nodeCount: () => tree().count,
    lastDrawn: () => lastDrawn,
    findPath,
    pathOf: (node) => pathOf(tree(), node),
    boxOf,
    nodeAt,
    zoom: () => state.zoom,
    metric: () => state.metric.name,
    order: () => state.order,
    value: (node) => layout(tree(), state.metric).v[node],
  };
  document.body.setAttribute("data-fg-ready", "1");
})();
