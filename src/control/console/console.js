// The cutover console: polls the admin listener's JSON endpoints and draws them; levers call the
// admin API. Everything that came from a request (URLs, hosts, titles, errors) is written with
// textContent or as an attribute value through the DOM, never parsed as markup.
'use strict';
(function () {
  const POLL_MS = 2000;
  const TOKEN_KEY = 'cutover-admin-token';
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);
  let failures = 0;
  let timer = null;
  let lastStatus = null;

  // A DOM element: `props.text` is its text, `props.cls` its class, other keys are attributes.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'cls') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  // `headers`: a label, or [label, metric] for a column whose numbers come from one series.
  function table(id, headers, rows) {
    const th = (h) => (Array.isArray(h)
      ? el('th', { scope: 'col', title: h[1] }, h[0], el('span', { cls: 'metric', text: h[1] }))
      : el('th', { scope: 'col', text: h }));
    const head = el('thead', {}, el('tr', {}, ...headers.map(th)));
    const body = el('tbody', {}, ...rows);
    if (rows.length === 0) body.append(el('tr', {}, el('td', { colspan: headers.length, cls: 'muted', text: 'none yet' })));
    $(id).replaceChildren(head, body);
  }
  const pct = (x) => (x === null || x === undefined ? '-' : (x * 100).toFixed(2) + '%');
  const num = (x, d) => (x === null || x === undefined ? '-' : Number(x).toFixed(d));
  const ms = (s) => (s === null || s === undefined ? '-' : (s * 1000).toFixed(1) + ' ms');
  const when = (unixSeconds) => (unixSeconds ? new Date(unixSeconds * 1000).toLocaleTimeString() : '-');

  async function getJSON(path) {
    const r = await fetch(path, { cache: 'no-store', credentials: 'omit' });
    if (r.status === 404) return null; // the feature is off
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return r.json();
  }
  async function getText(path) {
    const r = await fetch(path, { cache: 'no-store', credentials: 'omit' });
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return r.text();
  }
  const optional = (p) => p.catch(() => undefined);

  // ---- connection state --------------------------------------------------------------------
  function setConnected(status) {
    failures = 0;
    document.body.classList.remove('stale');
    const c = $('conn');
    c.dataset.state = 'connected';
    c.textContent = 'connected' + (status.ready ? '' : ' (not ready)') + (status.draining ? ' (draining)' : '');
    $('proc').textContent = 'cutover ' + status.version + ', pid ' + status.pid + ', up ' +
      status.uptime_seconds + ' s, config generation ' + status.config.generation + ' (' + status.config.source + ')';
  }
  function setDisconnected(err) {
    failures += 1;
    document.body.classList.add('stale');
    const c = $('conn');
    c.dataset.state = 'disconnected';
    c.textContent = 'disconnected, retrying (attempt ' + failures + '): ' + (err && err.message ? err.message : 'no answer');
  }

  // ---- share ----------------------------------------------------------------------------------
  function renderShare(status) {
    const s = status.split;
    const onNew = s.new_share;
    const bar = $('share-bar');
    const o = el('span', { cls: 'old', text: s.from + ' (old) ' + (100 - onNew).toFixed(2) + '%' });
    const n = el('span', { cls: 'new', text: s.to + ' (new) ' + onNew.toFixed(2) + '%' });
    // A sliver too narrow for its label keeps it in the accessible name and the text below.
    if (100 - onNew < 8) o.textContent = '';
    if (onNew < 8) n.textContent = '';
    o.style.width = (100 - onNew) + '%';
    n.style.width = onNew + '%';
    bar.replaceChildren(o, n);
    bar.setAttribute('aria-label', onNew.toFixed(2) + '% of shoppers on ' + s.to + ', the rest on ' + s.from);
    $('share-text').textContent = 'Share on new (' + s.to + '): ' + onNew.toFixed(2) + '% (' + s.new_share_source +
      '), on old (' + s.from + '): ' + (100 - onNew).toFixed(2) + '%. Pinning ' + (status.pins.pinning ? 'on' : 'off') +
      '. Metric: cutover_split_new_share_ratio';
    const input = $('share-input');
    if (document.activeElement !== input && input.value === '') input.value = String(onNew);
  }

  // ---- rollout --------------------------------------------------------------------------------
  function renderRollout(r) {
    const section = $('rollout');
    if (!r || !r.configured) { section.hidden = true; return; }
    section.hidden = false;
    const st = r.state || {};
    $('rollout-state').textContent = 'Mode ' + r.mode + ', phase ' + (st.phase || '-') + ', step ' +
      (st.phase === 'idle' ? 0 : (st.step || 0) + 1) + ' of ' + r.steps.length + ', share now ' + r.share_now.toFixed(2) +
      '%' + (st.reason ? '. Reason: ' + st.reason : '') + (r.error ? '. Error: ' + r.error : '') +
      '. Metrics: cutover_rollout_state, cutover_rollout_step';
    const steps = r.steps.map((share, i) => {
      const current = st.phase !== 'idle' && st.step === i;
      return el('li', { 'data-current': current, text: share + '%' + (current ? ' (current)' : '') });
    });
    $('rollout-steps').replaceChildren(...steps);
    table('rollout-verdicts', ['gate', ['result', 'cutover_rollout_verdicts_total'], ['old', 'cutover_rollout_gate_value{side="old"}'],
      ['new', 'cutover_rollout_gate_value{side="new"}'], ['limit', 'cutover_rollout_gate_value{side="limit"}'], 'requests old / new'],
      (st.last_verdicts || []).map((v) => el('tr', {},
        el('td', { text: v.gate }),
        el('td', { cls: v.result === 'fail' ? 'fail' : v.result === 'pass' ? 'pass' : '', text: v.result }),
        el('td', { text: num(v.old, 4) }),
        el('td', { text: num(v.new, 4) }),
        el('td', { text: num(v.limit, 4) }),
        el('td', { text: num(v.old_requests, 0) + ' / ' + num(v.new_requests, 0) }))));
  }

  // ---- figures and charts -----------------------------------------------------------------
  const FIGURES = [
    { key: 'requests_per_second', label: 'Requests/s', fmt: (x) => num(x, 1) },
    { key: 'error_ratio', label: 'Error ratio (5xx)', fmt: pct },
    { key: 'not_found_ratio', label: '404 ratio', fmt: pct },
    { key: 'p95_seconds', label: 'p95 latency', fmt: ms },
  ];
  function chart(label, oldValues, newValues) {
    const w = 300, h = 60;
    const all = oldValues.concat(newValues).filter((v) => v !== null && v !== undefined);
    const max = Math.max(...all, 0) || 1;
    const n = Math.max(oldValues.length, newValues.length, 2);
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'chart');
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label + ': old dashed, new solid, top of the chart ' + max.toPrecision(3));
    const axis = document.createElementNS(SVG, 'line');
    for (const [k, v] of [['x1', 0], ['y1', h - 1], ['x2', w], ['y2', h - 1], ['class', 'axis']]) axis.setAttribute(k, v);
    svg.append(axis);
    for (const [cls, values] of [['old', oldValues], ['new', newValues]]) {
      const pts = [];
      values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        pts.push(((i / (n - 1)) * w).toFixed(1) + ',' + (h - 2 - (v / max) * (h - 6)).toFixed(1));
      });
      const line = document.createElementNS(SVG, 'polyline');
      line.setAttribute('class', cls);
      line.setAttribute('points', pts.join(' '));
      svg.append(line);
    }
    return svg;
  }
  function renderFigures(status, series) {
    if (!series) return;
    const from = status.split.from, to = status.split.to;
    const pick = (name, key) => series.points.map((p) => {
      const s = p.storefronts.find((x) => x.storefront === name);
      return s ? s[key] : null;
    });
    const last = (values) => (values.length ? values[values.length - 1] : null);
    const cards = FIGURES.map((f) => {
      const metric = series.metrics[f.key];
      const o = pick(from, f.key), n = pick(to, f.key);
      return el('div', { cls: 'card', title: metric },
        el('h3', { text: f.label }),
        el('span', { cls: 'metric', text: metric }),
        el('div', { cls: 'pair' },
          el('div', { cls: 'side-old' }, 'old ', el('small', { text: '(' + from + ')' }), el('br'),
            el('b', { 'data-fig': f.key, 'data-side': 'old', text: f.fmt(last(o)) })),
          el('div', { cls: 'side-new' }, 'new ', el('small', { text: '(' + to + ')' }), el('br'),
            el('b', { 'data-fig': f.key, 'data-side': 'new', text: f.fmt(last(n)) }))),
        chart(f.label + ' over the last ' + Math.round(series.points.length * series.interval_seconds) + ' s', o, n));
    });
    $('figures').replaceChildren(...cards);
  }

  // ---- storefronts ------------------------------------------------------------------------
  function renderStorefronts(status) {
    const split = status.split;
    const side = (name) => (name === split.from ? 'old' : name === split.to ? 'new' : 'other');
    const order = (s) => (s.name === split.from ? 0 : s.name === split.to ? 1 : 2);
    const rows = status.storefronts.slice().sort((a, b) => order(a) - order(b)).map((s) => {
      const evacuate = el('button', { type: 'button', text: 'Evacuate ' + s.name + '\u2026' });
      evacuate.addEventListener('click', () => lever(
        'Evacuate ' + s.name + ': release every pin to it issued until now? Shoppers pinned there are routed by the share again.',
        'POST', '/admin/evacuate/' + encodeURIComponent(s.name)));
      return el('tr', { 'data-storefront': s.name },
        el('th', { scope: 'row', cls: 'side-' + side(s.name) }, s.name, ' ', el('small', { text: '(' + side(s.name) + ' side)' })),
        el('td', { cls: 'mono', text: s.upstream }),
        el('td', { cls: 'responses', title: 'cutover_requests_total', text: String(s.responses) }),
        el('td', { title: 'cutover_requests_total{status_class="5xx"}', text: String(s.responses_5xx) }),
        el('td', { title: 'cutover_upstream_errors_total', text: String(s.upstream_errors) + (s.upstream_errors_by_kind.length ? ' (' +
          s.upstream_errors_by_kind.map((k) => k[0] + ' ' + k[1]).join(', ') + ')' : '') }),
        el('td', { title: 'cutover_requests_in_flight', text: String(s.in_flight) }),
        el('td', { cls: 'evacuated', text: s.evacuated_at ? when(s.evacuated_at) + ' (' + s.evacuated_at_source + ')' : 'no' }),
        el('td', {}, evacuate));
    });
    table('storefronts', ['storefront', 'upstream', ['responses', 'cutover_requests_total'],
      ['5xx', 'cutover_requests_total{status_class="5xx"}'], ['upstream errors', 'cutover_upstream_errors_total'],
      ['in flight', 'cutover_requests_in_flight'], 'evacuated', 'lever'], rows);
  }

  // ---- redirects ------------------------------------------------------------------------------
  function metricSum(text, name) {
    let sum = null;
    for (const line of text.split('\n')) {
      if (line.startsWith(name + ' ') || line.startsWith(name + '{')) {
        const v = Number(line.slice(line.lastIndexOf(' ') + 1));
        if (!Number.isNaN(v)) sum = (sum || 0) + v;
      }
    }
    return sum;
  }
  function renderRedirects(status, missed, metricsText) {
    table('redirect-tables', ['table', 'file', ['entries', 'cutover_redirect_table_entries'],
      ['loaded at generation', 'cutover_redirect_table_generation']], status.redirects.map((r) => el('tr', {},
      el('td', { text: r.name }), el('td', { cls: 'url', text: r.file }),
      el('td', { text: String(r.entries) }), el('td', { text: String(r.loaded_generation) }))));
    if (typeof metricsText === 'string') {
      const served = metricSum(metricsText, 'cutover_redirects_served_total');
      const misses = metricSum(metricsText, 'cutover_redirect_misses_total');
      const p = $('redirect-counts');
      p.replaceChildren('Redirects served: ', el('b', { id: 'redirects-served', text: served === null ? '-' : String(served) }),
        el('span', { cls: 'metric', text: ' cutover_redirects_served_total' }), '. Misses: ',
        el('b', { id: 'redirects-missed', text: misses === null ? '-' : String(misses) }),
        el('span', { cls: 'metric', text: ' cutover_redirect_misses_total' }));
    }
    if (missed === undefined) return;
    const entries = missed ? missed.entries.slice(0, 20) : [];
    table('missed', ['missed URL', 'host', 'count'], entries.map((m) => el('tr', {},
      el('td', { cls: 'url', text: m.path }), el('td', { text: m.host || '-' }), el('td', { text: String(m.count) }))));
  }

  // ---- inventory and shadow ---------------------------------------------------------------
  function renderInventory(cov) {
    if (cov === undefined) return;
    $('inventory').hidden = !cov;
    if (!cov) return;
    $('inventory-summary').textContent = 'Old-store hits covered: ' + pct(cov.hits_ratio) + ' (' + cov.covered_hits + ' of ' +
      cov.hits + '). URLs covered: ' + pct(cov.urls_ratio) + ' (' + cov.covered_urls + ' of ' + cov.urls + '). ' +
      cov.by_verdict.map((v) => v[0] + ' ' + v[1]).join(', ') + '. Metric: cutover_inventory_coverage_ratio';
    const rows = cov.rows.filter((r) => r.verdict === 'uncovered' || r.verdict === 'fallback_served').slice(0, 20);
    table('inventory-rows', ['uncovered old URL', 'hits', 'crawler hits'], rows.map((r) => el('tr', {},
      el('td', { cls: 'url', text: r.old_url }), el('td', { text: String(r.hits) }), el('td', { text: String(r.crawler_hits) }))));
  }
  function renderShadow(sh) {
    if (sh === undefined) return;
    $('shadow').hidden = !sh;
    if (!sh) return;
    const q = sh.requests;
    $('shadow-summary').textContent = 'Compared: ' + q.match + ' match, ' + q.mismatch + ' mismatch, ' + q.error +
      ' error, ' + q.dropped + ' dropped. Metrics: cutover_shadow_requests_total, cutover_shadow_mismatches_total';
    table('shadow-kinds', ['kind', 'mismatches', 'top URLs', 'example (old / new)'], sh.kinds.map((k) => el('tr', {},
      el('td', { text: k.kind }), el('td', { text: String(k.mismatches) }),
      el('td', { cls: 'url', text: k.top_urls.map((u) => u.url + ' (' + u.hits + ')').join('\n') }),
      el('td', { text: k.example ? k.example.url + ': "' + k.example.old + '" / "' + k.example.new + '"' : '-' }))));
  }

  // ---- reloads and fleet ------------------------------------------------------------------
  function renderReloads(history) {
    if (!history) return;
    const rows = history.slice(-15).reverse().map((h) => el('tr', {},
      el('td', { text: when(h.at) }), el('td', { text: h.trigger }), el('td', { text: String(h.generation) }),
      el('td', { cls: h.applied ? 'pass' : 'fail', text: h.applied ? 'applied' : 'REJECTED' }),
      el('td', { text: h.new_share.toFixed(2) + '%' }), el('td', { cls: 'error', text: h.error || '' })));
    table('reloads', ['time', 'trigger', 'generation', 'result', 'share on new', 'error'], rows);
  }
  function renderFleet(status, fleet) {
    $('fleet').hidden = !status.fleet;
    if (!status.fleet || !fleet) return;
    const f = status.fleet;
    $('fleet-summary').textContent = 'This replica ' + f.id + (f.leader ? ' (leader)' : '') + ', store ' +
      (f.connected ? 'connected' : 'UNREACHABLE' + (f.last_error ? ': ' + f.last_error : '')) +
      ', fleet generation ' + fleet.generation + ', applied here ' + f.applied_generation + '.';
    table('fleet-rows', ['replica', 'address', 'version', 'generation', 'lag', 'last seen'], fleet.replicas.map((r) => el('tr', {},
      el('td', { text: r.id + (r.leader ? ' (leader)' : '') }), el('td', { text: r.address }), el('td', { text: r.version }),
      el('td', { text: String(r.generation) }), el('td', { cls: r.flagged ? 'fail' : '', text: r.lag }),
      el('td', { text: when(r.last_seen_unix_ms / 1000) }))));
  }

  // ---- polling ----------------------------------------------------------------------------
  async function poll() {
    clearTimeout(timer);
    try {
      const status = await getJSON('/admin/status');
      if (!status) throw new Error('no status endpoint');
      const [series, history, rollout, missed, inventory, shadow, fleet, metricsText] = await Promise.all([
        optional(getJSON('/admin/timeseries')), optional(getJSON('/admin/history')), optional(getJSON('/admin/rollout')),
        optional(getJSON('/redirects/missed')), optional(getJSON('/inventory/coverage')), optional(getJSON('/shadow')),
        status.fleet ? optional(getJSON('/admin/fleet')) : Promise.resolve(undefined), optional(getText('/metrics'))]);
      lastStatus = status;
      setConnected(status);
      renderShare(status);
      renderRollout(rollout);
      renderFigures(status, series);
      renderStorefronts(status);
      renderRedirects(status, missed, metricsText);
      renderInventory(inventory);
      renderShadow(shadow);
      renderReloads(history);
      renderFleet(status, fleet);
    } catch (e) {
      setDisconnected(e);
    }
    timer = setTimeout(poll, failures ? Math.min(1000 * failures, 5000) : POLL_MS);
  }

  // ---- levers -----------------------------------------------------------------------------
  function showResult(kind, text) {
    const r = $('result');
    r.dataset.kind = kind;
    r.textContent = text;
  }
  function confirmStep(text) {
    const dialog = $('confirm');
    $('confirm-text').textContent = text;
    return new Promise((resolve) => {
      const done = (answer) => {
        $('confirm-yes').onclick = null;
        $('confirm-no').onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      $('confirm-yes').onclick = () => done(true);
      $('confirm-no').onclick = () => done(false);
      dialog.onclose = () => done(false); // Escape
      dialog.showModal();
      $('confirm-no').focus();
    });
  }
  function describe(data) {
    if (!data) return 'done';
    if (data.command) return data.command + ': ' + (data.messages.length ? data.messages.join(' ') : 'done');
    if (data.applied !== undefined && data.overrides !== undefined) return 'reloaded: generation ' + data.generation + ', share on new ' + data.new_share.toFixed(2) + '%';
    let s = data.changed === false ? 'nothing changed' : 'done: share on new now ' + data.new_share.toFixed(2) + '% (was ' +
      data.previous_share.toFixed(2) + '%), generation ' + data.generation;
    if (data.storefront) s = 'evacuated ' + data.storefront + ', generation ' + data.generation;
    if (data.warnings && data.warnings.length) s += '\nWARNING: ' + data.warnings.join('\nWARNING: ');
    if (data.notes && data.notes.length) s += '\n' + data.notes.join('\n');
    return s;
  }
  async function lever(question, method, path, body) {
    if (!(await confirmStep(question))) { showResult('info', 'cancelled: nothing was sent'); return; }
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    showResult('info', 'sending ' + method + ' ' + path + '\u2026');
    let r;
    try {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      showResult('error', 'not done: the proxy did not answer (' + e.message + ')');
      return;
    }
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.ok) showResult('ok', describe(data));
    else if (r.status === 401) showResult('error', 'refused (401): ' + (data && data.error ? data.error : 'unauthorized') + '. Enter the admin token above.');
    else showResult('error', 'refused (' + r.status + '): ' + (data && data.error ? data.error : r.statusText));
    poll();
  }

  function init() {
    const stored = sessionStorage.getItem(TOKEN_KEY);
    $('token-state').textContent = stored ? 'a token is set for this tab' : 'no token set (changes then work from this machine only when the proxy has none)';
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('token').value.trim();
      if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
      $('token').value = '';
      $('token-state').textContent = v ? 'a token is set for this tab' : 'no token set';
    });
    $('token-forget').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $('token-state').textContent = 'no token set';
    });
    $('share-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = Number($('share-input').value);
      if (!(v >= 0 && v <= 100)) { showResult('error', 'the share is a percent between 0 and 100'); return; }
      const from = lastStatus ? lastStatus.split.new_share.toFixed(2) + '%' : 'its current value';
      lever('Set the share on new from ' + from + ' to ' + v.toFixed(2) + '%? Shoppers without a pin follow on their next page.',
        'PUT', '/admin/split', { new_share: v });
    });
    for (const b of document.querySelectorAll('[data-rollout]')) {
      const cmd = b.dataset.rollout;
      const what = { start: 'Start the rollout at its first step?', pause: 'Pause the rollout at its step?',
        resume: 'Resume the paused rollout?', abort: 'Roll back: stop the rollout (share to 0 in enforce mode)?' }[cmd];
      b.addEventListener('click', () => lever(what, 'POST', '/admin/rollout/' + cmd));
    }
    $('reload').addEventListener('click', () => lever('Re-read the config file now? A file that does not validate is rejected and the running config keeps serving.', 'POST', '/admin/reload'));
    poll();
  }
  document.addEventListener('DOMContentLoaded', init);
})();
