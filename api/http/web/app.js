// The evoprune page: the experiment list, the config form and the live view of one experiment.
"use strict";

(() => {
  const TOKEN_KEY = "evoprune.apiToken";
  const LIST_POLL_MS = 4000;
  const RENDER_DELAY_MS = 250; // events arrive in bursts; one redraw per burst keeps the 3-D plot smooth
  const POPULATION_DELAY_MS = 2000; // population fronts are fetched, not streamed: at most one request per 2 s
  const EVALUATIONS_PAGE = 1000;
  const EVALUATIONS_CAP = 20000; // the grey cloud of all evaluations is context; more only slows the plot
  const ACTIVE = new Set(["queued", "running"]);

  const $ = (id) => document.getElementById(id);
  const el = {
    connection: $("connection"), tokenButton: $("token-button"), tokenDialog: $("token-dialog"),
    tokenForm: $("token-form"), tokenInput: $("token-input"), tokenReason: $("token-reason"),
    tokenForget: $("token-forget"),
    form: $("create-form"), yaml: $("config-yaml"), errors: $("config-errors"), submit: $("submit-button"),
    reset: $("reset-config"),
    list: $("experiment-list"), listEmpty: $("list-empty"), listCount: $("list-count"),
    detailEmpty: $("detail-empty"), detailBody: $("detail-body"), heading: $("detail-heading"),
    detailId: $("detail-id"), status: $("detail-status"), streamState: $("stream-state"),
    cancel: $("cancel-button"), progress: $("detail-progress"), progressLabel: $("detail-progress-label"),
    detailError: $("detail-error"), statHv: $("stat-hv"), statFront: $("stat-front"),
    statBest: $("stat-best"),
    statCache: $("stat-cache"), frontPlot: $("front-plot"), hvPlot: $("hv-plot"),
    frontKind: $("front-kind"),
    runsBody: document.querySelector("#runs-table tbody"),
    frontBody: document.querySelector("#front-table tbody"),
    analysis: {
      card: $("analysis-card"), state: $("analysis-state"), form: $("analysis-form"), top: $("analysis-top"),
      samples: $("analysis-samples"), button: $("analyse-button"), error: $("analysis-error"),
      gallery: $("analysis-gallery"), files: $("analysis-files"), downloads: $("analysis-downloads"),
    },
    point: {
      card: $("point-card"), objectives: $("point-objectives"), button: $("export-button"),
      state: $("point-state"), error: $("point-error"), format: $("export-format"),
      ensemble: $("export-ensemble"),
    },
  };
  const demoYaml = el.yaml.value;

  // ---- HTTP, with the optional bearer token ------------------------------------------------------------

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let tokenWaiters = [];

  class ApiError extends Error {
    constructor(status, detail) {
      super(typeof detail === "string" ? detail : `HTTP ${status}`);
      this.status = status;
      this.detail = detail;
    }
  }

  function authHeaders() {
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  /** Resolves once the user has entered a token; every caller that met a 401 then retries. */
  function needToken(rejected) {
    el.tokenReason.textContent = rejected && token
      ? "The server rejected this token; enter the current one."
      : "This server needs an API token (the value of EVOPRUNE_API_TOKEN).";
    el.tokenButton.hidden = false;
    el.tokenInput.value = token;
    if (!el.tokenDialog.open) el.tokenDialog.showModal();
    return new Promise((resolve) => tokenWaiters.push(resolve));
  }

  function setConnection(ok, text) {
    el.connection.textContent = text;
    el.connection.classList.toggle("bad", !ok);
  }

  // Paths are relative ("experiments", not "/experiments") so the page also works behind a path prefix.
  /** A successful response; asks for the token and retries on 401; throws ApiError otherwise. */
  async function send(method, path, body, accept) {
    for (;;) {
      const headers = { Accept: accept, ...authHeaders() };
      const init = { method, headers, cache: "no-store" };
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      let response;
      try {
        response = await fetch(path, init);
      } catch {
        setConnection(false, "server unreachable");
        throw new ApiError(0, "the server cannot be reached");
      }
      if (response.status === 401) {
        await needToken(true);
        continue;
      }
      if (!response.ok) {
        const payload = await response.json().catch(() => null);
        throw new ApiError(response.status, payload?.detail ?? response.statusText);
      }
      return response;
    }
  }

  async function api(method, path, body) {
    const response = await send(method, path, body, "application/json");
    return response.status === 204 ? null : response.json().catch(() => null);
  }

  /** A file (an analysis plot or table) as a Blob: fetched with the token, which <img src> cannot send. */
  async function apiBlob(path) {
    return (await send("GET", path, undefined, "*/*")).blob();
  }

  el.tokenForm.addEventListener("submit", () => {
    token = el.tokenInput.value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    const waiters = tokenWaiters;
    tokenWaiters = [];
    waiters.forEach((resolve) => resolve());
  });
  el.tokenForget.addEventListener("click", () => {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    el.tokenInput.value = "";
    el.tokenInput.focus();
  });
  el.tokenButton.addEventListener("click", () => needToken(false));

  // ---- formatting ----------------------------------------------------------------------------------------

  const fixed = (value, digits = 4) =>
    (value == null || Number.isNaN(value) ? "–" : Number(value).toFixed(digits));
  const percent = (done, total) => (total ? `${Math.floor((100 * done) / total)} %` : "");

  function duration(startIso, endIso) {
    if (!startIso) return "";
    const seconds = Math.max(0, ((endIso ? Date.parse(endIso) : Date.now()) - Date.parse(startIso)) / 1000);
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function node(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value == null || value === false) continue;
      if (key === "class") element.className = value;
      else if (key in element && typeof value !== "string") element[key] = value;
      else element.setAttribute(key, value);
    }
    element.append(...children.filter((child) => child != null));
    return element;
  }

  function badge(status) {
    return node("span", { class: `badge ${status}` }, status);
  }

  // the analysis of a succeeded experiment (artifacts.js)
  const analysisPanel = EvoArtifacts.create({
    api, blob: apiBlob, authorised: () => Boolean(token), node, el: el.analysis,
  });

  // the clicked front point and its export (exports.js)
  const pointPanel = EvoExports.create({ api, blob: apiBlob, node, el: el.point });
  el.frontPlot.addEventListener("evoprune-point", (event) => pointPanel.choose(event.detail));

  // ---- the config form (its problem list is form.js) ------------------------------------------------

  el.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!el.yaml.value.trim()) {
      const empty = [{ loc: ["body", "config_yaml"], msg: "the config is empty" }];
      EvoForm.show(el.errors, el.yaml, new ApiError(422, empty));
      return;
    }
    el.submit.disabled = true;
    el.submit.textContent = "Starting…";
    try {
      const created = await api("POST", "experiments", { config_yaml: el.yaml.value });
      EvoForm.clear(el.errors, el.yaml);
      select(created.id);
      refreshList();
    } catch (error) {
      EvoForm.show(el.errors, el.yaml, error);
    } finally {
      el.submit.disabled = false;
      el.submit.textContent = "Start experiment";
    }
  });
  el.reset.addEventListener("click", () => {
    el.yaml.value = demoYaml;
    EvoForm.clear(el.errors, el.yaml);
  });

  // ---- the experiment list ---------------------------------------------------------------------------

  let experiments = [];

  function renderList() {
    const focusedId = document.activeElement?.dataset?.id;
    el.listEmpty.hidden = experiments.length > 0;
    el.list.replaceChildren(...experiments.map((item) => {
      const total = item.evaluations_total || 0;
      const button = node("button", { type: "button", "data-id": item.id,
        "aria-current": item.id === current?.id ? "true" : "false",
        "aria-label": `${item.name}, ${item.status}, ${item.evaluations_done} of ${total} evaluations` },
      node("span", { class: "name" }, item.name), badge(item.status),
      node("span", { class: "meta" },
        node("progress", { max: total || 1, value: item.evaluations_done || 0, "aria-hidden": "true" }),
        node("span", { class: "mono" }, `${item.evaluations_done}/${total}`),
        node("span", { class: "mono", title: "hypervolume of the aggregated front" },
          `HV ${fixed(item.hypervolume, 3)}`)));
      button.addEventListener("click", () => select(item.id));
      return node("li", {}, button);
    }));
    if (focusedId) el.list.querySelector(`[data-id="${focusedId}"]`)?.focus();
  }

  async function refreshList() {
    if (tokenWaiters.length > 0) return; // the token dialog is open: do not stack up requests
    try {
      const page = await api("GET", "experiments?limit=50");
      experiments = page.experiments;
      el.listCount.textContent =
        page.total > experiments.length ? `newest ${experiments.length} of ${page.total}` : "";
      setConnection(true, healthText);
      renderList();
      if (current && !current.streaming) {
        // without a live stream (it ended or failed) the record is kept fresh by polling
        const record = experiments.find((item) => item.id === current.id);
        if (record && !current.finished) Object.assign(current.record, record);
        scheduleRender();
      }
    } catch (error) {
      if (error.status !== 0) setConnection(false, error.message);
    }
  }

  // ---- one experiment, live ----------------------------------------------------------------------------

  let current = null; // the selected experiment's view: its record, fronts, hypervolume history, stream

  function newView(id) {
    return {
      id,
      // a copy: events update it in place, the list keeps its own until the next poll
      record: JSON.parse(JSON.stringify(
        experiments.find((item) => item.id === id) ?? { id, name: id, status: "queued", runs: [] })),
      fronts: new Map(), // run -> [{accuracy, active_fraction, auroc, mask}], run -1 = all runs (archive)
      // the population fronts (the paper's), fetched from /front rather than streamed: they change only
      // when a step is applied, and a front event announces that
      population: { fronts: new Map(), timer: null, loaded: false, again: false },
      hypervolume: new Map(), // run -> [{evaluations, hypervolume}] ascending
      evaluations: [], // every evaluated mask's objectives (the grey cloud)
      evaluationKeys: new Set(),
      finished: false,
      streaming: false,
      streamError: null, // why the event stream gave up (e.g. no such experiment)
      evaluationsLoaded: false,
      controller: new AbortController(),
      renderTimer: null,
    };
  }

  function select(id) {
    if (current?.id === id) return;
    if (current) {
      current.controller.abort();
      clearTimeout(current.renderTimer);
    }
    current = newView(id);
    history.replaceState(null, "", `#experiment=${encodeURIComponent(id)}`);
    el.detailEmpty.hidden = true;
    el.detailBody.hidden = false;
    renderList();
    renderDetail();
    follow(current);
  }

  function runRecord(view, run) {
    const runs = view.record.runs || (view.record.runs = []);
    let entry = runs.find((item) => item.run === run);
    if (!entry) {
      entry = { run, evaluations_done: 0, evaluations_total: null, hypervolume: 0, finished: false };
      runs.push(entry);
      runs.sort((a, b) => a.run - b.run);
    }
    return entry;
  }

  /** Adds a hypervolume point, replacing one at the same evaluation count. */
  function addHypervolume(view, run, evaluations, hypervolume) {
    const history = view.hypervolume.get(run) ?? [];
    const last = history[history.length - 1];
    if (last && last.evaluations === evaluations) last.hypervolume = hypervolume;
    else if (!last || last.evaluations < evaluations) history.push({ evaluations, hypervolume });
    view.hypervolume.set(run, history);
  }

  function addEvaluation(view, item) {
    // a mask screened out at a short budget (fidelity < 1) has no full-protocol objectives to plot
    if (item.fidelity !== undefined && item.fidelity !== null && item.fidelity < 1) return;
    const key = `${item.run}:${item.step}:${item.mask}`;
    if (view.evaluationKeys.has(key) || view.evaluations.length >= EVALUATIONS_CAP) return;
    view.evaluationKeys.add(key);
    view.evaluations.push(item);
  }

  function applyFront(view, front) {
    view.fronts.clear();
    for (const point of front.points) {
      if (!view.fronts.has(point.run)) view.fronts.set(point.run, []);
      view.fronts.get(point.run).push(point);
    }
    for (const item of front.hypervolume_history ?? []) {
      addHypervolume(view, item.run ?? -1, item.evaluations, item.hypervolume);
    }
    for (const item of front.runs ?? []) {
      if (!view.fronts.has(item.run)) view.fronts.set(item.run, []);
      // each run's history (above) ends at its front's last change: its curve runs on flat to "now"
      if (item.run >= 0 && item.evaluations > 0) {
        addHypervolume(view, item.run, front.evaluations_done, item.hypervolume);
      }
    }
  }

  /** Fetches the population fronts, at most once per POPULATION_DELAY_MS while events keep coming. */
  function loadPopulation(view) {
    const population = view.population;
    if (population.timer) {
      population.again = true; // a fetch already under way may have read the state before this event
      return;
    }
    population.again = false;
    population.timer = setTimeout(async () => {
      try {
        const front = await api("GET", `experiments/${encodeURIComponent(view.id)}/front?kind=population`);
        const fronts = new Map();
        for (const point of front.points) {
          if (!fronts.has(point.run)) fronts.set(point.run, []);
          fronts.get(point.run).push(point);
        }
        Object.assign(population, { fronts, loaded: true });
        if (current === view) scheduleRender();
      } catch (error) {
        console.warn("evoprune: population fronts not loaded", error);
      } finally {
        population.timer = null;
        if (population.again && current === view) loadPopulation(view);
      }
    }, population.loaded ? POPULATION_DELAY_MS : 0);
  }

  /** The fronts the selector shows: the populations' (default) or the archives'. */
  function shownFronts(view) {
    return el.frontKind.value === "archive" ? view.fronts : view.population.fronts;
  }

  const HANDLERS = {
    snapshot(view, data) {
      view.record = data.experiment;
      // a finished experiment's stream may end right after its snapshot: nothing more to wait for
      if (!ACTIVE.has(view.record.status)) view.finished = true;
      applyFront(view, data.front);
      loadEvaluations(view);
      loadPopulation(view);
    },
    status(view, data) {
      Object.assign(view.record, data);
    },
    evaluation(view, data) {
      view.record.evaluations_done = data.evaluations_done;
      view.record.evaluations_total = data.evaluations_total;
      if (data.cached) view.record.cache_hits = (view.record.cache_hits || 0) + 1;
      if (view.record.status === "queued") view.record.status = "running";
      runRecord(view, data.run).evaluations_done += 1;
      addEvaluation(view, data);
    },
    front(view, data) {
      view.fronts.set(data.run, data.points.map((point) => ({ ...point, run: data.run })));
      const x = data.run < 0 ? data.evaluations : view.record.evaluations_done ?? data.evaluations;
      addHypervolume(view, data.run, x, data.hypervolume);
      if (data.run < 0) view.record.hypervolume = data.hypervolume;
      else runRecord(view, data.run).hypervolume = data.hypervolume;
      loadPopulation(view);
    },
    "run-finished"(view, data) {
      Object.assign(runRecord(view, data.run), {
        finished: true, hypervolume: data.hypervolume, evaluations_done: data.evaluations,
      });
    },
    done(view, data) {
      view.finished = true;
      loadPopulation(view);
      Object.assign(view.record, {
        status: data.status, error: data.error, hypervolume: data.hypervolume, cache_hits: data.cache_hits,
      });
      // the final record has finished_at and per-run totals the events do not carry
      api("GET", `experiments/${view.id}`).then((record) => {
        if (current === view) {
          view.record = record;
          scheduleRender();
        }
      }).catch(() => {});
    },
  };

  function follow(view) {
    EvoSSE.follow(`experiments/${encodeURIComponent(view.id)}/events`, {
      signal: view.controller.signal,
      headers: authHeaders,
      isFinished: () => view.finished,
      onUnauthorized: () => needToken(true),
      onEvent(message) {
        const handler = HANDLERS[message.type];
        if (!handler) return; // an event type added later: ignore rather than fail
        try {
          handler(view, JSON.parse(message.data));
        } catch (error) {
          console.error("evoprune: bad event", message, error);
        }
        scheduleRender();
      },
      onState(state, detail) {
        view.streaming = state === "open";
        const text = {
          connecting: "connecting…", open: "● live", reconnecting: "connection lost, reconnecting…",
          closed: view.finished ? "" : "stream closed", error: `stream: ${detail}`,
        }[state];
        el.streamState.textContent = text ?? "";
        if (state === "error") {
          // e.g. an unknown id from an old link: say so where the experiment would be
          view.streamError = detail;
          scheduleRender();
        }
        el.streamState.classList.toggle("live", state === "open");
      },
    });
  }

  /** Fetches every evaluation so far (up to the cap) for the grey cloud; live events add the rest. */
  async function loadEvaluations(view) {
    if (view.evaluationsLoaded) return;
    view.evaluationsLoaded = true;
    try {
      for (let offset = 0; offset < EVALUATIONS_CAP; offset += EVALUATIONS_PAGE) {
        const query = `offset=${offset}&limit=${EVALUATIONS_PAGE}`;
        const page = await api("GET", `experiments/${encodeURIComponent(view.id)}/evaluations?${query}`);
        if (current !== view) return;
        page.evaluations.forEach((item) => addEvaluation(view, item));
        scheduleRender();
        if (offset + page.evaluations.length >= page.total || page.evaluations.length === 0) return;
      }
    } catch (error) {
      console.warn("evoprune: evaluations not loaded", error);
    }
  }

  function scheduleRender() {
    const view = current;
    if (!view || view.renderTimer) return;
    view.renderTimer = setTimeout(() => {
      view.renderTimer = null;
      if (current === view) renderDetail();
    }, RENDER_DELAY_MS);
  }

  function renderDetail() {
    const view = current;
    const record = view.record;
    const done = record.evaluations_done || 0;
    const total = record.evaluations_total || 0;
    el.heading.textContent = record.name;
    const parts = [record.id];
    if (record.runs?.length) parts.push(`${record.runs.length} run${record.runs.length === 1 ? "" : "s"}`);
    if (record.mask_length) parts.push(`mask length ${record.mask_length}`);
    if (record.started_at) {
      const took = duration(record.started_at, record.finished_at);
      parts.push(`${record.finished_at ? "took" : "running for"} ${took}`);
    }
    el.detailId.textContent = parts.join(" · ");
    el.status.className = `badge ${record.status}`;
    el.status.textContent = record.status;
    el.cancel.hidden = !ACTIVE.has(record.status) || Boolean(view.streamError);
    el.progress.max = total || 1;
    el.progress.value = done;
    const share = total ? ` (${percent(done, total)})` : "";
    el.progressLabel.textContent = `${done} / ${total} evaluations${share}`;
    const problem = record.error ? `Failed: ${record.error}` : view.streamError;
    el.detailError.hidden = !problem;
    el.detailError.textContent = problem ?? "";
    analysisPanel.update(view.streamError ? null : record);
    pointPanel.update(record);

    const fronts = shownFronts(view);
    const aggregate = fronts.get(-1) ?? [];
    const best = aggregate.reduce(
      (top, point) => (!top || point.accuracy > top.accuracy ? point : top), null);
    // the record's hypervolume is the aggregated archive's: the one the live events carry
    el.statHv.textContent = fixed(record.hypervolume);
    el.statFront.textContent = `${aggregate.length} masks`;
    el.statBest.textContent = best
      ? `${fixed(best.accuracy)} · ${Math.round(100 * best.active_fraction)} % active` : "–";
    el.statBest.title = best
      ? `accuracy ${best.accuracy}, active fraction ${best.active_fraction}, AUROC ${best.auroc}` : "";
    el.statCache.textContent = record.cache_hits ?? "–";

    el.runsBody.replaceChildren(...(record.runs ?? []).map((run) => node("tr", {},
      node("td", {}, node("span", { class: "swatch", style: `background:${EvoPlots.runColour(run.run)}` }),
        `run ${run.run}`, run.finished ? " ✓" : ""),
      node("td", {}, node("progress", { max: run.evaluations_total || 1, value: run.evaluations_done || 0,
        "aria-label": `run ${run.run} progress` })),
      node("td", { class: "num" }, `${run.evaluations_done ?? 0} / ${run.evaluations_total ?? "?"}`),
      node("td", { class: "num" }, String((fronts.get(run.run) ?? []).length)),
      node("td", { class: "num" }, fixed(run.hypervolume)))));

    const rows = [...aggregate].sort(
      (a, b) => b.accuracy - a.accuracy || a.active_fraction - b.active_fraction);
    // points that break search.constraints' objective bounds are marked, in the table as in the plot
    const constraints = EvoPlots.constraintBounds(view.record.config);
    const infeasible = (point) => constraints.active && EvoPlots.breaksBounds(point, constraints);
    el.frontBody.replaceChildren(...rows.map((point) => node("tr", infeasible(point)
      ? { class: "infeasible", title: "breaks search.constraints" } : {},
      node("td", { class: "num" }, fixed(point.accuracy)),
      node("td", { class: "num" }, fixed(point.active_fraction)),
      node("td", { class: "num" }, fixed(point.auroc)),
      node("td", { class: "mask", title: point.mask }, point.mask))));

    if (window.Plotly) {
      EvoPlots.drawFront(el.frontPlot, { ...view, fronts, constraints });
      EvoPlots.drawHypervolume(el.hvPlot, view);
    }
  }

  el.frontKind.addEventListener("change", () => {
    if (current) renderDetail();
  });

  el.cancel.addEventListener("click", async () => {
    const view = current;
    if (!confirm(`Cancel "${view.record.name}"? Results so far are kept and it can be resumed.`)) return;
    el.cancel.disabled = true;
    try {
      Object.assign(view.record, await api("DELETE", `experiments/${encodeURIComponent(view.id)}`));
    } catch (error) {
      alert(`Not cancelled: ${error.message}`);
    } finally {
      el.cancel.disabled = false;
      scheduleRender();
    }
  });

  // ---- start -------------------------------------------------------------------------------------------

  let healthText = "";

  async function start() {
    try {
      const response = await fetch("health", { cache: "no-store" });
      const health = await response.json();
      healthText = `${health.store} store${health.store_ok ? "" : " (unavailable)"}`;
      setConnection(health.store_ok !== false, healthText);
      if (health.auth_required) {
        el.tokenButton.hidden = false;
        if (!token) await needToken(false);
      }
    } catch {
      setConnection(false, "server unreachable");
    }
    const linked = () => new URLSearchParams(location.hash.slice(1)).get("experiment");
    await refreshList();
    const selected = linked() ?? experiments[0]?.id;
    if (selected) select(selected);
    // a pasted or edited link (#experiment=ID) selects that experiment without a reload
    window.addEventListener("hashchange", () => { if (linked()) select(linked()); });
    setInterval(() => { if (!document.hidden) refreshList(); }, LIST_POLL_MS);
  }

  start();
})();
