// The analysis of a succeeded experiment: the Analyse button, its progress, its plots and its files.
"use strict";

window.EvoArtifacts = (() => {
  const POLL_MS = 3000; // while an analysis runs; its stages take seconds to minutes
  const RETRY_MS = 10000; // after a failed listing (server restarting, network)
  const DOWNLOAD_URL_LIFETIME_MS = 60000;

  function size(bytes) {
    if (bytes == null) return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1 << 20) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / (1 << 20)).toFixed(1)} MB`;
  }

  /** The server's reasons, one line each (a 422 names the field). */
  function reasons(error) {
    if (Array.isArray(error.detail)) {
      return error.detail.map((item) => `${(item.loc || []).slice(1).join(".")}: ${item.msg}`).join("; ");
    }
    return error.message;
  }

  /**
   * The analysis panel of the page.
   *
   * @param {object} options
   *   api(method, path, body): JSON from the server (asks for the token on 401, throws ApiError);
   *   blob(path): a file from the server as a Blob, sent with the token;
   *   authorised(): whether requests carry a token (then links cannot be followed as they are);
   *   node(tag, attributes, ...children): builds an element;
   *   el: the panel's elements (card, state, form, top, samples, button, error, gallery, files, downloads).
   */
  function create({ api, blob, authorised, node, el }) {
    let shown = null; // the experiment on display: { id, timer, key, generation, urls }

    const base = (state) => `experiments/${encodeURIComponent(state.id)}`;
    const filePath = (state, item) => `${base(state)}/artifacts/${encodeURIComponent(item.name)}`;

    function release(state) {
      clearTimeout(state.timer);
      state.urls.forEach((url) => URL.revokeObjectURL(url));
      state.urls = [];
    }

    /** Shows the analysis of `record` when it has succeeded, and hides the panel otherwise. */
    function update(record) {
      const wanted = record?.status === "succeeded" ? record.id : null;
      if (shown?.id === wanted) return;
      if (shown) release(shown);
      shown = null;
      el.card.hidden = !wanted;
      if (!wanted) return;
      shown = { id: wanted, timer: null, key: null, generation: 0, urls: [] };
      el.gallery.replaceChildren();
      el.downloads.replaceChildren();
      el.files.hidden = true;
      el.error.hidden = true;
      el.button.disabled = false;
      el.button.textContent = "Analyse";
      el.state.textContent = "loading…";
      refresh(shown);
    }

    async function refresh(state) {
      clearTimeout(state.timer);
      let listing = null;
      try {
        listing = await api("GET", `${base(state)}/artifacts`);
      } catch (error) {
        if (shown === state) el.state.textContent = `not loaded: ${error.message}`;
      }
      if (shown !== state) return;
      if (listing) render(state, listing);
      if (!listing || listing.analysis.status === "running") {
        state.timer = setTimeout(() => refresh(state), listing ? POLL_MS : RETRY_MS);
      }
    }

    function describe(analysis) {
      switch (analysis.status) {
        case "running":
          return `running: ${analysis.stage || "…"}`;
        case "succeeded":
          return analysis.finished_at ? `done ${new Date(analysis.finished_at).toLocaleString()}` : "done";
        case "failed":
          return "failed";
        default:
          return "not analysed yet";
      }
    }

    function render(state, listing) {
      const analysis = listing.analysis;
      const running = analysis.status === "running";
      el.state.textContent = describe(analysis);
      el.button.disabled = running;
      el.button.textContent = running ? "Analysing…" : analysis.status === "none" ? "Analyse" : "Analyse again";
      el.error.hidden = analysis.status !== "failed";
      el.error.textContent = analysis.status === "failed"
        ? `The analysis failed: ${analysis.error || "no reason given"}` : "";
      // redraw only when the files changed: each image is a fetch
      const key = JSON.stringify([analysis.finished_at, listing.artifacts.map((a) => [a.name, a.size_bytes])]);
      if (key === state.key) return;
      state.key = key;
      release(state);
      const generation = ++state.generation;
      const images = listing.artifacts.filter((item) => item.source === "analysis" && item.kind === "image");
      el.gallery.replaceChildren(...images.map((item) => figure(state, generation, item)));
      const files = listing.artifacts.filter((item) => !images.includes(item));
      el.downloads.replaceChildren(...files.map((item) => fileLink(state, item)));
      el.files.hidden = files.length === 0;
    }

    // <img src> cannot send the Authorization header: each image is fetched and shown from a blob URL
    function figure(state, generation, item) {
      const image = node("img", { alt: item.description || item.name });
      const link = node("a", { class: "gallery-link", target: "_blank", rel: "noopener",
        title: "open at full size" }, image);
      blob(filePath(state, item)).then((data) => {
        if (shown !== state || state.generation !== generation) return;
        const url = URL.createObjectURL(data);
        state.urls.push(url);
        image.src = url;
        link.href = url;
      }).catch((error) => {
        image.replaceWith(node("span", { class: "hint" }, `not loaded: ${error.message}`));
      });
      return node("figure", { class: "gallery-item" }, link,
        node("figcaption", {}, node("span", { class: "mono" }, item.name), " ", item.description));
    }

    function fileLink(state, item) {
      const link = node("a", { href: filePath(state, item), download: item.name }, item.name);
      link.addEventListener("click", async (event) => {
        if (!authorised()) return; // an open server: the browser downloads it as it is
        event.preventDefault();
        try {
          const url = URL.createObjectURL(await blob(filePath(state, item)));
          const save = node("a", { href: url, download: item.name });
          document.body.append(save);
          save.click();
          save.remove();
          setTimeout(() => URL.revokeObjectURL(url), DOWNLOAD_URL_LIFETIME_MS);
        } catch (error) {
          alert(`${item.name} not downloaded: ${error.message}`);
        }
      });
      const about = [size(item.size_bytes), item.description].filter(Boolean).join(" · ");
      return node("li", {}, link, node("span", { class: "hint" }, ` ${about}`));
    }

    el.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const state = shown;
      if (!state) return;
      el.button.disabled = true;
      el.error.hidden = true;
      try {
        const body = { top: Number(el.top.value), samples: Number(el.samples.value) };
        const analysis = await api("POST", `${base(state)}/analysis`, body);
        if (shown !== state) return;
        el.state.textContent = describe(analysis);
        el.button.textContent = "Analysing…";
      } catch (error) {
        if (shown !== state) return;
        el.error.textContent = `Not started: ${reasons(error)}`;
        el.error.hidden = false;
        el.button.disabled = false;
        if (error.status !== 409) return; // already running elsewhere: follow that one
      }
      refresh(state);
    });

    return { update };
  }

  return { create };
})();
