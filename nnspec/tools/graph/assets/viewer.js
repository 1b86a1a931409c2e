/* The graph viewer of `nnspec graph --format html`: the graph (JSON in #nnspec-data) is laid
   out by ELK's layered algorithm (elkjs, inlined before this script) for the blocks folded
   now, and laid out again whenever a block is folded or unfolded; drawn as SVG with zoom
   and pan, search, and a panel with the details of the node clicked. */
(function () {
  'use strict';
  var SVGNS = 'http://www.w3.org/2000/svg';
  var D = JSON.parse(document.getElementById('nnspec-data').textContent);
  var root = document.documentElement;
  var view = document.getElementById('view');
  var scene = document.getElementById('scene');
  var statusEl = document.getElementById('nnspec-status');
  var details = document.getElementById('details');
  var search = document.getElementById('search');
  var depthSel = document.getElementById('depth');
  var FONT = '10px Helvetica, Arial, sans-serif', BOLD = 'bold ' + FONT;
  var LABEL_FONT = '9px Helvetica, Arial, sans-serif';
  var LINE = 13, HEADER = 22;

  var nodeById = {}, kids = {}, members = {}, inside = {}, maxLevel = -1;
  D.nodes.forEach(function (n) {
    nodeById[n.id] = n;
    var c = n.cl.length ? n.cl[n.cl.length - 1] : '';
    (members[c] = members[c] || []).push(n.id);
    n.cl.forEach(function (cid) { inside[cid] = (inside[cid] || 0) + 1; });
  });
  Object.keys(D.clusters).forEach(function (cid) {
    var c = D.clusters[cid];
    (kids[c.parent || ''] = kids[c.parent || ''] || []).push(cid);
    if (c.kind === 'block') { maxLevel = Math.max(maxLevel, c.level); }
  });
  var folded = {};
  D.fold.forEach(function (cid) { folded[cid] = true; });

  var canvas = document.createElement('canvas').getContext('2d');
  var widths = {};
  function textWidth(text, font) {
    var key = font + '\u0000' + text;
    if (!(key in widths)) { canvas.font = font; widths[key] = canvas.measureText(text).width; }
    return widths[key];
  }

  function fitText(text, font, room) {  // the text, cut with an ellipsis to fit the room
    if (textWidth(text, font) <= room) { return text; }
    var lo = 0, hi = text.length;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (textWidth(text.slice(0, mid) + '\u2026', font) <= room) { lo = mid; } else { hi = mid - 1; }
    }
    return text.slice(0, lo) + '\u2026';
  }

  // the visible stand-in of a node or cluster: its outermost folded block, or itself
  function outerFold(chain) {
    for (var i = 0; i < chain.length; i++) {
      if (folded[chain[i]]) { return chain[i] + 'f'; }
    }
    return null;
  }
  function ancestors(cid) {
    var out = [];
    for (var p = D.clusters[cid].parent; p; p = D.clusters[p].parent) { out.unshift(p); }
    return out;
  }
  function shownAs(id) {
    var n = nodeById[id];
    return outerFold(n.cl) || id;
  }

  // ---- the ELK graph of the current fold state -------------------------------------------
  var shapes = {};  // drawn id -> {lines, kind, family, cid?}
  function leafSize(lines) {
    var w = 0;
    lines.forEach(function (t, i) { w = Math.max(w, textWidth(t, i ? FONT : BOLD)); });
    return { width: Math.ceil(w) + 18, height: lines.length * LINE + 9 };
  }
  function elkGraph() {
    shapes = {};
    var edges = [], seen = {}, leaving = {}, weights = [];
    D.edges.forEach(function (e, k) {
      var s = shownAs(e[0]), t = shownAs(e[1]);
      if (s === t) { return; }
      var key = s + '\u0000' + t + '\u0000' + e[2];
      if (seen[key]) { return; }
      seen[key] = true;
      if (e[3] === 'tie' || e[3] === 'shared') {  // drawn after the layout: no rank
        weights.push({ id: 'w' + k, src: s, dst: t, label: e[2], kind: e[3] });
        return;
      }
      if (/f$/.test(s) && D.clusters[s.slice(0, -1)]) {
        var l = leaving[s] = leaving[s] || [];
        if (l.indexOf(e[2]) < 0) { l.push(e[2]); }
      }
      var lw = textWidth(e[2], LABEL_FONT);
      edges.push({ id: 'e' + k, sources: [s], targets: [t], kind: e[3], text: e[2],
                   labels: e[2] ? [{ text: e[2], width: Math.ceil(lw) + 4, height: 11 }] : [] });
    });
    function leaf(id) {
      var n = nodeById[id];
      shapes[id] = { lines: n.lines, kind: n.kind, family: n.info && n.info.family };
      var s = leafSize(n.lines);
      return { id: id, width: s.width, height: s.height };
    }
    function cluster(cid) {
      var c = D.clusters[cid];
      if (folded[cid]) {
        var out = (leaving[cid + 'f'] || []).slice(0, 3).map(function (t) {
          return '\u2192 ' + t;
        });
        var lines = ['\u25b8 ' + c.label[0]].concat(out, [c.label[c.label.length - 1]]);
        shapes[cid + 'f'] = { lines: lines, kind: 'block', cid: cid };
        var s = leafSize(lines);
        return { id: cid + 'f', width: s.width + 6, height: s.height + 4 };
      }
      var head = (c.kind === 'block' ? '\u25be ' : '') + c.label.join('  \u00b7  ');
      shapes[cid] = { lines: [head], kind: 'cluster', cid: cid };
      var ch = (kids[cid] || []).map(cluster).concat((members[cid] || []).map(leaf));
      return { id: cid, children: ch, layoutOptions: {
        'elk.padding': '[top=' + HEADER + ',left=10,bottom=10,right=10]' } };
    }
    var top = (kids[''] || []).map(cluster).concat((members[''] || []).map(leaf));
    return { graph: { id: 'root', children: top, edges: edges, layoutOptions: {
      'elk.algorithm': 'layered', 'elk.direction': 'DOWN',
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.json.edgeCoords': 'ROOT', 'elk.json.shapeCoords': 'ROOT',
      'elk.layered.spacing.nodeNodeBetweenLayers': '22', 'elk.spacing.nodeNode': '16',
      'elk.layered.spacing.edgeNodeBetweenLayers': '10', 'elk.spacing.edgeLabel': '2',
      'elk.layered.nodePlacement.bk.fixedAlignment': 'BALANCED',
      'elk.padding': '[top=10,left=10,bottom=10,right=10]' } }, weights: weights };
  }

  // ---- the fallback for graphs too big for ELK: ranks by longest path, no block boxes ----
  var ELK_LIMIT = 1000;
  function rankLayout(graph) {
    var leaves = [], at = {};
    (function collect(list) {
      list.forEach(function (n) { if (n.children) { collect(n.children); } else { leaves.push(n); } });
    })(graph.children);
    leaves.forEach(function (n, i) { at[n.id] = i; n.rank = 0; n.ins = 0; });
    var outs = leaves.map(function () { return []; });
    graph.edges.forEach(function (e) {
      var a = at[e.sources[0]], b = at[e.targets[0]];
      if (a !== undefined && b !== undefined) { outs[a].push(b); leaves[b].ins += 1; }
    });
    var queue = leaves.filter(function (n) { return !n.ins; }).map(function (n) { return at[n.id]; });
    for (var q = 0; q < queue.length; q++) {  // Kahn's order: a node after its inputs
      outs[queue[q]].forEach(function (b) {
        leaves[b].rank = Math.max(leaves[b].rank, leaves[queue[q]].rank + 1);
        if (--leaves[b].ins === 0) { queue.push(b); }
      });
    }
    var rows = [];
    leaves.forEach(function (n) { (rows[n.rank] = rows[n.rank] || []).push(n); });
    var y = 10, width = 0;
    rows.forEach(function (row) {
      var x = 10, h = 0;
      row.forEach(function (n) { n.x = x; n.y = y; x += n.width + 24; h = Math.max(h, n.height); });
      width = Math.max(width, x);
      y += h + 44;
    });
    rows.forEach(function (row) {  // each row centred
      var last = row[row.length - 1], shift = (width - (last.x + last.width + 10)) / 2;
      row.forEach(function (n) { n.x += shift; });
    });
    graph.edges.forEach(function (e) {
      var a = leaves[at[e.sources[0]]], b = leaves[at[e.targets[0]]];
      if (!a || !b) { return; }
      var p = { x: a.x + a.width / 2, y: a.y + a.height }, r = { x: b.x + b.width / 2, y: b.y };
      e.sections = [{ startPoint: p, endPoint: r }];
      e.labels.forEach(function (l) { l.x = (p.x + r.x) / 2 + 4; l.y = (p.y + r.y) / 2 - 6; });
    });
    return Promise.resolve({ children: leaves, edges: graph.edges, width: width, height: y });
  }

  // ---- drawing ---------------------------------------------------------------------------
  function el(name, attrs, parent) {
    var e = document.createElementNS(SVGNS, name);
    for (var k in attrs) { if (attrs.hasOwnProperty(k)) { e.setAttribute(k, attrs[k]); } }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function lines(g, x, y, texts, cls) {
    texts.forEach(function (t, i) {
      var e = el('text', { x: x, y: y + i * LINE, 'class': i || cls === 'head' ? cls : 'first' }, g);
      e.textContent = t;
    });
  }
  var boxes = {}, drawn = {}, bbox = { width: 0, height: 0 };
  function draw(res, weights) {
    scene.textContent = '';
    boxes = {};
    drawn = {};
    var gc = el('g', { 'class': 'clusters' }, scene), ge = el('g', { 'class': 'edges' }, scene);
    var gn = el('g', { 'class': 'nodes' }, scene);
    function walk(n) {
      var s = shapes[n.id];
      boxes[n.id] = n;
      if (n.children && s && s.kind === 'cluster') {
        var c = D.clusters[s.cid];
        var g = el('g', { 'class': 'cluster nn-' + c.kind, 'data-id': s.cid }, gc);
        el('rect', { x: n.x, y: n.y, width: n.width, height: n.height, rx: 8 }, g);
        var h = el('rect', { 'class': 'header', x: n.x, y: n.y, width: n.width,
                             height: HEADER - 4, rx: 8 }, g);
        lines(g, n.x + 8, n.y + 13, [fitText(s.lines[0], FONT, n.width - 14)], 'head');
        el('title', {}, g).textContent = c.tip;
        drawn[s.cid] = g;
        if (c.kind === 'block') { g.addEventListener('click', onClick(s.cid, 'fold')); }
        h.setAttribute('data-fold', s.cid);
      } else if (s) {
        var n0 = nodeById[n.id];
        var cls = 'node nn-' + s.kind + (s.family ? ' fam-' + s.family : '');
        var gnode = el('g', { 'class': cls, 'data-id': n.id }, gn);
        el('rect', { x: n.x, y: n.y, width: n.width, height: n.height,
                     rx: s.kind === 'layer' ? 6 : 2 }, gnode);
        if (s.kind === 'block') {
          el('path', { 'class': 'depth', d: 'M' + (n.x + 3) + ',' + (n.y + n.height + 3) + 'h' +
                       (n.width - 3) + 'v-' + (n.height - 3) }, gnode);
        }
        lines(gnode, n.x + 9, n.y + 15, s.lines);
        el('title', {}, gnode).textContent = s.cid ? D.clusters[s.cid].tip : n0.tip;
        drawn[n.id] = gnode;
        gnode.addEventListener('click', onClick(s.cid || n.id, s.cid ? 'unfold' : 'show'));
      }
      (n.children || []).forEach(walk);
    }
    (res.children || []).forEach(walk);
    (res.edges || []).forEach(function (e) {
      var g = el('g', { 'class': 'edge nn-' + e.kind, 'data-src': e.sources[0],
                        'data-dst': e.targets[0] }, ge);
      (e.sections || []).forEach(function (sec) {
        var pts = [sec.startPoint].concat(sec.bendPoints || [], [sec.endPoint]);
        el('path', { d: 'M' + pts.map(function (p) { return p.x + ',' + p.y; }).join('L'),
                     'marker-end': 'url(#arrow)' }, g);
      });
      (e.labels || []).forEach(function (l) {
        el('text', { x: l.x + 2, y: l.y + 9, 'class': 'label' }, g).textContent = l.text;
      });
    });
    weights.forEach(function (w) {  // a tied or shared weight: a dashed arc on the right
      var a = boxes[w.src], b = boxes[w.dst];
      if (!a || !b) { return; }
      var x1 = a.x + a.width, y1 = a.y + a.height / 2, x2 = b.x + b.width, y2 = b.y + b.height / 2;
      var bulge = Math.max(x1, x2) + 40 + Math.min(200, Math.abs(y2 - y1) / 8);
      var g = el('g', { 'class': 'edge nn-' + w.kind, 'data-src': w.src, 'data-dst': w.dst }, ge);
      el('path', { d: 'M' + x1 + ',' + y1 + 'C' + bulge + ',' + y1 + ' ' + bulge + ',' + y2 +
                   ' ' + x2 + ',' + y2, 'marker-end': 'url(#arrow-weight)' }, g);
      el('text', { x: bulge - 20, y: (y1 + y2) / 2, 'class': 'label' }, g).textContent = w.label;
      el('title', {}, g).textContent = w.label;
    });
    bbox = { width: res.width || 0, height: res.height || 0 };
    view.setAttribute('data-graph-width', String(bbox.width));
    view.setAttribute('data-graph-height', String(bbox.height));
  }

  // ---- zoom and pan ----------------------------------------------------------------------
  var T = { x: 0, y: 0, k: 1 };
  function apply() {
    scene.setAttribute('transform', 'translate(' + T.x + ',' + T.y + ') scale(' + T.k + ')');
  }
  function fit() {
    var W = view.clientWidth, H = view.clientHeight;
    var k = Math.min(1, W / bbox.width, H / bbox.height);
    if (k < 0.5) { k = Math.min(1, W / bbox.width); }  // a tall graph: its width, from the top
    T.k = k;
    T.x = (W - bbox.width * k) / 2;
    T.y = bbox.height * k <= H ? (H - bbox.height * k) / 2 : 8;
    apply();
  }
  function centreOn(id) {
    var b = boxes[id];
    if (!b) { return; }
    T.k = Math.max(T.k, 0.8);
    T.x = view.clientWidth / 2 - (b.x + b.width / 2) * T.k;
    T.y = view.clientHeight / 2 - (b.y + b.height / 2) * T.k;
    apply();
  }
  view.addEventListener('wheel', function (ev) {
    ev.preventDefault();
    var r = view.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
    var k = Math.min(4, Math.max(0.02, T.k * Math.exp(-ev.deltaY * 0.0015)));
    T.x = px - (px - T.x) * k / T.k;
    T.y = py - (py - T.y) * k / T.k;
    T.k = k;
    apply();
  }, { passive: false });
  var drag = null, dragged = false;
  view.addEventListener('pointerdown', function (ev) {
    drag = { x: ev.clientX, y: ev.clientY, tx: T.x, ty: T.y };
    dragged = false;
  });
  window.addEventListener('pointermove', function (ev) {
    if (!drag) { return; }
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 4) { return; }
    dragged = true;
    view.classList.add('dragging');
    T.x = drag.tx + dx;
    T.y = drag.ty + dy;
    apply();
  });
  view.addEventListener('click', function () { if (!dragged) { details.hidden = true; } });
  window.addEventListener('pointerup', function () { drag = null; view.classList.remove('dragging'); });

  // ---- details ---------------------------------------------------------------------------
  function row(table, key, value) {
    if (value === undefined || value === null || value === '') { return; }
    var tr = document.createElement('tr');
    var th = document.createElement('th'), td = document.createElement('td');
    th.textContent = key;
    td.textContent = value;
    tr.appendChild(th);
    tr.appendChild(td);
    table.appendChild(tr);
  }
  function fmtInt(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
  function showDetails(id) {
    details.textContent = '';
    var h = document.createElement('h2'), t = document.createElement('table');
    var c = D.clusters[id];
    if (c) {
      h.textContent = c.label[0];
      row(t, 'kind', c.kind);
      row(t, 'call', c.tip);
      row(t, 'parameters', fmtInt(c.params));
      row(t, 'nodes inside', fmtInt(inside[id] || 0));
    } else {
      var n = nodeById[id], i = n.info || {};
      h.textContent = i.name || n.lines[0];
      row(t, 'kind', i.op ? i.op + (i.family ? ' (' + i.family + ')' : '') : n.kind);
      row(t, 'layer', i.label);
      Object.keys(i.args || {}).forEach(function (k) { row(t, '  ' + k, i.args[k]); });
      (i.ins || []).forEach(function (s, j) { row(t, 'in' + (i.ins.length > 1 ? ' ' + j : ''), s); });
      row(t, 'out', i.out);
      row(t, 'parameters', n.kind === 'layer' ? fmtInt(n.params) : '');
      row(t, 'spec', i.where);
      row(t, 'note', i.detail);
      row(t, 'blocks', n.cl.slice(1).map(function (b) { return D.clusters[b].label[0]; }).join(' \u203a '));
    }
    details.appendChild(h);
    details.appendChild(t);
    details.hidden = false;
    Object.keys(drawn).forEach(function (k) { drawn[k].classList.toggle('selected', k === id); });
  }

  // ---- folding ---------------------------------------------------------------------------
  var elk = new ELK(), simple = false, layouts = 0, busy = null, again = false, anchor = null;
  function layout() {
    if (busy) { again = true; return busy; }
    var t0 = performance.now(), built = elkGraph();
    statusEl.textContent = 'laying out\u2026';
    var big = Object.keys(shapes).filter(function (k) { return shapes[k].kind !== 'cluster'; })
      .length > ELK_LIMIT;
    var run = big ? rankLayout(built.graph) : elk.layout(built.graph).catch(function (err) {
      if (window.console) { console.warn('ELK failed, drawn by ranks:', err); }
      big = true;
      return rankLayout(elkGraph().graph);
    });
    busy = run.then(function (res) {
      simple = big;
      var before = anchor;
      root.setAttribute('data-nnspec-layout-ms', String(Math.round(performance.now() - t0)));
      draw(res, built.weights);
      var b = before && boxes[before.id];
      if (b) {  // keep the block clicked where it was on the screen, or else in sight
        T.x = before.sx - b.x * T.k;
        T.y = before.sy - b.y * T.k;
        var W = view.clientWidth, H = view.clientHeight;
        if (before.sx < 0 || before.sy < 0 || before.sx > W - 20 || before.sy > H - 20) {
          T.x = W / 2 - (b.x + Math.min(b.width, W / T.k) / 2) * T.k;
          T.y = Math.min(H / 2, 40) - b.y * T.k;
        }
        apply();
      } else if (!layouts) { fit(); }
      anchor = null;
      layouts += 1;
      mark();
      refreshSearch();
      busy = null;
      if (again) { again = false; return layout(); }
    }, function (err) {
      busy = null;
      statusEl.textContent = 'layout failed: ' + err;
      if (window.console) { console.error(err); }
    });
    return busy;
  }
  function mark() {
    var shown = scene.querySelectorAll('g.node').length;
    var nf = Object.keys(folded).filter(function (k) { return folded[k]; }).length;
    statusEl.textContent = D.nodes.length + ' nodes (' + shown + ' drawn, ' + nf +
      ' blocks folded): click a block to fold or unfold it' + (simple ? '; over ' + ELK_LIMIT +
      ' nodes drawn: laid out by ranks, without block boxes (fold blocks for a finer layout)' : '');
    root.setAttribute('data-nnspec-shown', String(shown));
    root.setAttribute('data-nnspec-layouts', String(layouts));
    root.setAttribute('data-nnspec-ready', String(D.nodes.length));
  }
  function setAnchor(cid, shut) {  // the block drawn now, and the one that replaces it
    var b = boxes[shut ? cid : cid + 'f'];
    anchor = b ? { id: shut ? cid + 'f' : cid, sx: T.x + b.x * T.k, sy: T.y + b.y * T.k } : null;
  }
  function toggle(cid, shut) {
    setAnchor(cid, shut);
    folded[cid] = shut;
    return layout().then(function () { showDetails(cid); });
  }
  function onClick(id, what) {
    return function (ev) {
      ev.stopPropagation();
      if (dragged) { return; }
      if (what === 'fold') { toggle(id, true); } else if (what === 'unfold') { toggle(id, false); } else { showDetails(id); }
    };
  }
  function foldTo(level) {
    Object.keys(D.clusters).forEach(function (cid) {
      var c = D.clusters[cid];
      if (c.kind === 'block') { folded[cid] = level !== null && c.level >= level; }
    });
    return layout();
  }
  for (var lv = 0; lv <= maxLevel; lv++) {
    var o = document.createElement('option');
    o.value = String(lv);
    o.textContent = 'depth ' + lv;
    depthSel.appendChild(o);
  }
  depthSel.value = D.depth === null ? '' : String(D.depth);
  depthSel.addEventListener('change', function () {
    foldTo(depthSel.value === '' ? null : +depthSel.value).then(fit);
  });
  document.getElementById('fold-all').addEventListener('click', function () { foldTo(0).then(fit); });
  document.getElementById('unfold-all').addEventListener('click', function () { foldTo(null).then(fit); });
  document.getElementById('fit').addEventListener('click', fit);

  // ---- search ----------------------------------------------------------------------------
  var hits = [], at = -1;
  function matches(q) {
    q = q.trim().toLowerCase();
    if (!q) { return []; }
    return D.nodes.filter(function (n) {
      var i = n.info || {};
      return [i.name, i.op, i.label, i.family, n.lines[0]].some(function (s) {
        return s && s.toLowerCase().indexOf(q) >= 0;
      });
    }).map(function (n) { return n.id; });
  }
  function refreshSearch() {
    var lit = {};
    hits.forEach(function (id) { lit[shownAs(id)] = true; });
    Object.keys(drawn).forEach(function (k) {
      drawn[k].classList.toggle('hit', !!lit[k] || !!lit[k + 'f']);
      drawn[k].classList.toggle('current', at >= 0 && shownAs(hits[at]) === k);
    });
    var found = document.getElementById('found');
    found.textContent = !search.value.trim() ? '' : !hits.length ? 'no match'
      : at < 0 ? hits.length + ' match' + (hits.length > 1 ? 'es' : '') : (at + 1) + ' / ' + hits.length;
  }
  search.addEventListener('input', function () {
    hits = matches(search.value);
    at = -1;
    refreshSearch();
  });
  function next(step) {
    if (!hits.length) { return Promise.resolve(); }
    at = (at + step + hits.length) % hits.length;
    var id = hits[at], n = nodeById[id];
    var shut = n.cl.filter(function (c) { return folded[c]; });
    shut.forEach(function (c) { folded[c] = false; });
    return (shut.length ? layout() : Promise.resolve()).then(function () {
      refreshSearch();
      centreOn(id);
      showDetails(id);
    });
  }
  search.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter') { ev.preventDefault(); next(ev.shiftKey ? -1 : 1); }
    if (ev.key === 'Escape') { search.value = ''; hits = []; at = -1; refreshSearch(); }
  });

  var legend = document.getElementById('legend'), fams = {};
  D.nodes.forEach(function (n) { if (n.info && n.info.family) { fams[n.info.family] = true; } });
  Object.keys(fams).sort().forEach(function (f) {
    var s = document.createElement('span');
    s.className = 'fam-' + f;
    s.textContent = f;
    legend.appendChild(s);
  });
  window.nnspecViewer = { layout: layout, fold: function (c) { return toggle(c, true); },
                          unfold: function (c) { return toggle(c, false); },
                          search: function (q) { search.value = q; hits = matches(q); at = -1; return next(1); },
                          folded: folded, bbox: function () { return bbox; } };
  layout();
})();
