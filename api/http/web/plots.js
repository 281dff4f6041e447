// The two live figures of an experiment: its 3-D Pareto front and its hypervolume curve (Plotly).
"use strict";

window.EvoPlots = (() => {
  // Tableau 10: distinguishable for most colour-vision deficiencies; runs beyond 10 also change symbol.
  const RUN_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const RUN_SYMBOLS = ["circle", "square", "diamond-open", "circle-open", "x"];
  const AGGREGATE_COLOUR = "#111827";
  const FONT = {
    family: "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif", size: 12, color: "#1d2430",
  };
  const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["sendDataToCloud"] };

  function runColour(run) {
    return run < 0 ? AGGREGATE_COLOUR : RUN_COLOURS[run % RUN_COLOURS.length];
  }

  function runSymbol(run) {
    return RUN_SYMBOLS[Math.floor(run / RUN_COLOURS.length) % RUN_SYMBOLS.length];
  }

  function runName(run) {
    return run < 0 ? "all runs (aggregated front)" : `run ${run}`;
  }

  const HOVER_3D = "accuracy %{x:.4f}<br>active fraction %{y:.4f}<br>AUROC %{z:.4f}"
    + "<br>mask %{customdata[0]}<extra>%{fullData.name}</extra>";

  function pointsTrace(name, points, marker, extra) {
    return {
      type: "scatter3d",
      mode: "markers",
      name,
      x: points.map((p) => p.accuracy),
      y: points.map((p) => p.active_fraction),
      z: points.map((p) => p.auroc),
      // [shown mask, whole mask, run]: the hover shows the first, a click hands on the point
      customdata: points.map((p) => [shortMask(p.mask), p.mask, p.run]),
      hovertemplate: HOVER_3D,
      marker,
      ...extra,
    };
  }

  const INFEASIBLE_COLOUR = "#c0392b";
  const INFEASIBLE_NAME = "infeasible: breaks search.constraints";

  /**
   * The bounds of search.constraints that a point's objectives show it breaks, from the experiment's config.
   * A head budget (max_head_parameters, max_head_flops) needs the head's layout, which only the server
   * knows: the page cannot check it, and the legend says so.
   *
   * Returns {active, headBudget, bounds: {min_accuracy, max_active_fraction, min_auroc}} (null: unset).
   */
  function constraintBounds(config) {
    const limits = config?.search?.constraints ?? {};
    const bounds = {
      min_accuracy: limits.min_accuracy ?? null,
      max_active_fraction: limits.max_active_fraction ?? null,
      min_auroc: limits.min_auroc ?? null,
    };
    const headBudget = limits.max_head_parameters != null || limits.max_head_flops != null;
    return { active: headBudget || Object.values(bounds).some((bound) => bound !== null), headBudget, bounds };
  }

  /** Whether a point breaks an objective bound (a value equal to its bound keeps to it, as the search's). */
  function breaksBounds(point, constraints) {
    const { min_accuracy: accuracy, max_active_fraction: active, min_auroc: auroc } = constraints.bounds;
    return (accuracy !== null && point.accuracy < accuracy)
      || (active !== null && point.active_fraction > active)
      || (auroc !== null && point.auroc < auroc);
  }

  function shortMask(mask) {
    return mask && mask.length > 24 ? `${mask.slice(0, 24)}…` : mask ?? "";
  }

  /**
   * Draws (or updates in place, keeping the user's camera) the 3-D front.
   *
   * view: {id, fronts: Map run -> points, evaluations: points of every evaluated mask,
   *   constraints: constraintBounds(config), optional}: front points that break the constraints are
   *   crossed out in red by one more trace, whose legend entry says so.
   */
  function drawFront(element, view) {
    const traces = [];
    if (view.evaluations.length > 0) {
      traces.push(pointsTrace("all evaluations", view.evaluations,
        { size: 2.5, color: "#8a94a6", opacity: 0.35 }, { hoverinfo: "skip", hovertemplate: undefined }));
    }
    const runs = [...view.fronts.keys()].filter((run) => run >= 0).sort((a, b) => a - b);
    for (const run of runs) {
      traces.push(pointsTrace(runName(run), view.fronts.get(run),
        { size: 4, color: runColour(run), symbol: runSymbol(run), opacity: 0.9 }));
    }
    const aggregate = view.fronts.get(-1);
    if (aggregate) {
      // an open ring around the run's own coloured point: the run stays visible, membership stands out
      traces.push(pointsTrace(runName(-1), aggregate,
        { size: 9, color: AGGREGATE_COLOUR, symbol: "diamond-open",
          line: { color: AGGREGATE_COLOUR, width: 2 } }));
    }
    if (view.constraints?.active) {
      // over the fronts' own markers, so a point keeps its run's colour and stays clickable
      const seen = new Set();
      const infeasible = [];
      for (const points of view.fronts.values()) {
        for (const point of points) {
          if (!seen.has(point.mask) && breaksBounds(point, view.constraints)) {
            seen.add(point.mask);
            infeasible.push(point);
          }
        }
      }
      const name = view.constraints.headBudget
        ? `${INFEASIBLE_NAME} (head budgets are checked by the server, not here)` : INFEASIBLE_NAME;
      traces.push(pointsTrace(name, infeasible,
        { size: 7, color: INFEASIBLE_COLOUR, symbol: "x", line: { color: INFEASIBLE_COLOUR, width: 1 } },
        { showlegend: true }));
    }
    const axis = (title, range) => ({ title: { text: title }, range, backgroundcolor: "#f7f9fb",
      gridcolor: "#dde2e8", zerolinecolor: "#c5ccd6", showbackground: true });
    const layout = {
      uirevision: view.id, // redraws keep the camera the user chose
      font: FONT,
      margin: { l: 0, r: 0, t: 4, b: 0 },
      paper_bgcolor: "rgba(0,0,0,0)",
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 } },
      scene: {
        xaxis: axis("accuracy ↑"),
        yaxis: axis("active fraction ↓", [0, 1]),
        zaxis: axis("AUROC ↑"),
        camera: { eye: { x: 1.6, y: -1.6, z: 0.85 } },
        aspectmode: "cube",
      },
    };
    return Plotly.react(element, traces, layout, {
      ...CONFIG, toImageButtonOptions: { format: "png", filename: `evoprune-${view.id}-front`, scale: 2 },
    }).then((plot) => {
      if (!plot.evoprunePoints) {
        // once per element: a click on a point becomes an "evoprune-point" event with its objectives
        plot.evoprunePoints = true;
        plot.on("plotly_click", (data) => {
          const point = data.points?.[0];
          if (!point?.customdata) return;
          const [, mask, run] = point.customdata;
          plot.dispatchEvent(new CustomEvent("evoprune-point", {
            detail: { accuracy: point.x, active_fraction: point.y, auroc: point.z, mask, run },
          }));
        });
      }
      return plot;
    });
  }

  /**
   * Draws the hypervolume of each run's front and of the aggregated front against evaluations done.
   *
   * view: {id, hypervolume: Map run -> [{evaluations, hypervolume, runEvaluations}] ascending}
   */
  function drawHypervolume(element, view) {
    const runs = [...view.hypervolume.keys()].sort((a, b) => (a < 0) - (b < 0) || a - b);
    const traces = runs.map((run) => {
      const history = view.hypervolume.get(run);
      const aggregate = run < 0;
      return {
        type: "scatter",
        mode: history.length > 40 ? "lines" : "lines+markers",
        name: runName(run).replace(" (aggregated front)", ""),
        x: history.map((h) => h.evaluations),
        y: history.map((h) => h.hypervolume),
        line: { shape: "hv", color: runColour(run), width: aggregate ? 3 : 1.6 },
        marker: { size: aggregate ? 5 : 4, color: runColour(run) },
        hovertemplate: "%{y:.4f} after %{x} evaluations<extra>%{fullData.name}</extra>",
      };
    });
    const layout = {
      uirevision: view.id,
      font: FONT,
      margin: { l: 56, r: 12, t: 8, b: 48 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "#f7f9fb",
      showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 } },
      xaxis: { title: { text: "evaluations done (all runs)" }, gridcolor: "#e3e7ec", rangemode: "tozero" },
      // not from zero: the interesting part is how the curve still climbs, a few hundredths at a time
      yaxis: { title: { text: "hypervolume" }, gridcolor: "#e3e7ec", tickformat: ".3f" },
    };
    return Plotly.react(element, traces, layout, {
      ...CONFIG,
      toImageButtonOptions: { format: "png", filename: `evoprune-${view.id}-hypervolume`, scale: 2 },
    });
  }

  function purge(element) {
    if (window.Plotly) Plotly.purge(element);
  }

  return { drawFront, drawHypervolume, purge, runColour, runName, constraintBounds, breaksBounds };
})();
