// One front member: its objectives when its point is clicked, and the Export button that downloads it
// (or an ensemble of the front's members in a percentile window).
"use strict";

window.EvoExports = (() => {
  const POLL_MS = 2000; // an export re-trains one head and checks the saved model: seconds to minutes
  const DOWNLOAD_URL_LIFETIME_MS = 60000;

  /** The server's reasons, one line each (a 422 names the field). */
  function reasons(error) {
    if (Array.isArray(error.detail)) {
      return error.detail.map((item) => `${(item.loc || []).slice(1).join(".") || "body"}: ${item.msg}`)
        .join("; ");
    }
    return error.message;
  }

  /**
   * The panel of the clicked front point.
   *
   * @param {object} options
   *   api(method, path, body): JSON from the server (asks for the token on 401, throws ApiError);
   *   blob(path): a file from the server as a Blob, sent with the token;
   *   node(tag, attributes, ...children): builds an element;
   *   el: the panel's elements (card, objectives, button, state, error, format: the format chooser,
   *     whose values are keras, tflite, tflite:QUANTISATION or onnx; ensemble: a percentile window
   *     LOWER-UPPER, which exports the ensemble of the front's members there instead of the point,
   *     averaging their softmax outputs, as `evoprune export --ensemble`).
   */
  function create({ api, blob, node, el }) {
    let shown = null; // { id, succeeded, point, timer, exporting, format }

    const base = (state) => `experiments/${encodeURIComponent(state.id)}`;
    // the server answers absolute paths; the page's requests are relative (it may sit behind a prefix)
    const relative = (path) => path.replace(/^\//, "");

    /** Follows the experiment on display; a different one clears the chosen point. */
    function update(record) {
      const id = record?.id ?? null;
      if (shown?.id !== id) {
        if (shown) clearTimeout(shown.timer);
        shown = id ? { id, succeeded: false, point: null, timer: null, exporting: false } : null;
        el.card.hidden = true;
      }
      if (!shown) return;
      shown.succeeded = record.status === "succeeded";
      renderButton(shown);
    }

    /** Shows one point's objectives: {accuracy, active_fraction, auroc, mask, run}. */
    function choose(point) {
      if (!shown) return;
      shown.point = point;
      el.card.hidden = false;
      el.error.hidden = true;
      el.state.textContent = "";
      const row = (name, value) => node("div", {}, node("dt", {}, name), node("dd", { class: "mono" }, value));
      el.objectives.replaceChildren(
        row("Accuracy", Number(point.accuracy).toFixed(4)),
        row("Active fraction", Number(point.active_fraction).toFixed(4)),
        row("AUROC", Number(point.auroc).toFixed(4)),
        row("Run", point.run < 0 ? "all runs" : String(point.run)),
        row("Mask", point.mask.length > 24 ? `${point.mask.slice(0, 24)}…` : point.mask));
      renderButton(shown);
    }

    /** The chosen format: its name and quantisation, and the request's body fields. */
    function chosenFormat() {
      const [format, quantize] = (el.format?.value || "keras").split(":");
      // the server always writes the .keras file; the others are converted from it
      const body = format === "keras" ? {} : { formats: [format], ...(quantize ? { quantize } : {}) };
      return { format, quantize: quantize || null, body };
    }

    /** The window of an ensemble to export, or null for the chosen point. */
    function chosenWindow() {
      const span = (el.ensemble?.value || "").trim();
      return span === "" ? null : span;
    }

    function renderButton(state) {
      el.button.disabled = !state.succeeded || state.exporting || !state.point;
      el.button.title = state.succeeded ? "" : "an experiment can be exported once it has succeeded";
      const { format, quantize } = chosenFormat();
      const label = format === "keras" ? ".keras" : `.${format}${quantize ? `, ${quantize}` : ""}`;
      const what = chosenWindow() === null ? "model" : "ensemble";
      el.button.textContent = state.exporting ? "Exporting…" : `Export ${what} (${label})`;
    }

    async function follow(state) {
      let status = null;
      try {
        status = await api("GET", `${base(state)}/exports`);
      } catch (error) {
        if (shown === state) el.state.textContent = `not followed: ${error.message}`;
      }
      if (shown !== state) return;
      if (!status || status.status === "running") {
        el.state.textContent = status ? `running: ${status.stage || "…"}` : el.state.textContent;
        state.timer = setTimeout(() => follow(state), POLL_MS);
        return;
      }
      state.exporting = false;
      renderButton(state);
      if (status.status !== "succeeded") {
        el.error.textContent = `The export failed: ${status.error || "no reason given"}`;
        el.error.hidden = false;
        el.state.textContent = "";
        return;
      }
      el.state.textContent = `exported as ${status.name}; downloading`;
      const fileUrl = (status.file_urls || {})[state.format] || status.model_url;
      // the artifact's name is export-NAME.keras, export-NAME-int8.tflite, ...: saved as NAME.keras, ...
      const fileName = decodeURIComponent(fileUrl.split("/").pop()).replace(/^export-/, "");
      try {
        const url = URL.createObjectURL(await blob(relative(fileUrl)));
        const save = node("a", { href: url, download: fileName, hidden: true });
        document.body.append(save);
        save.click();
        save.remove();
        setTimeout(() => URL.revokeObjectURL(url), DOWNLOAD_URL_LIFETIME_MS);
        el.state.textContent = `downloaded ${fileName} (also among the files of the analysis panel)`;
      } catch (error) {
        el.error.textContent = `Not downloaded: ${error.message}`;
        el.error.hidden = false;
      }
    }

    el.button.addEventListener("click", async () => {
      const state = shown;
      if (!state?.point) return;
      const chosen = chosenFormat();
      state.format = chosen.format;
      state.exporting = true;
      renderButton(state);
      el.error.hidden = true;
      el.state.textContent = "starting…";
      try {
        // the server checks the window (422 naming it: malformed, or no member in it)
        const span = chosenWindow();
        const members = span === null ? { mask: state.point.mask } : { ensemble: span };
        await api("POST", `${base(state)}/exports`, { ...members, ...chosen.body });
      } catch (error) {
        if (shown !== state) return;
        el.error.textContent = `Not started: ${reasons(error)}`;
        el.error.hidden = false;
        el.state.textContent = "";
        state.exporting = false;
        renderButton(state);
        return;
      }
      if (shown === state) follow(state);
    });

    el.format?.addEventListener("change", () => { if (shown) renderButton(shown); });
    el.ensemble?.addEventListener("input", () => { if (shown) renderButton(shown); });

    return { update, choose };
  }

  return { create };
})();
