// The config form's problem list: the server's 422 details next to the YAML, each field a link to its line.
"use strict";

window.EvoForm = (() => {
  /** One {path, message} per problem, from a 422 detail list or a plain message. */
  function problemsOf(error) {
    if (Array.isArray(error.detail)) {
      return error.detail.map((item) => {
        const loc = (item.loc || []).filter((part, index) => !(index === 0 && part === "body"));
        const path = (loc[0] === "config" || loc[0] === "config_yaml") && loc.length > 1 ? loc.slice(1) : loc;
        const name = path.join(".");
        let message = String(item.msg ?? "");
        if (name && message.startsWith(`${name}: `)) message = message.slice(name.length + 2);
        return { path, message };
      });
    }
    return [{ path: [], message: error.message }];
  }

  const PROBLEM_TITLES = {
    0: "The server cannot be reached.",
    413: "The config is too large.",
    429: "Too many experiments are active; wait for one to finish.",
    503: "The server cannot start experiments right now.",
  };

  /** The line of a field in YAML text, found by key names and indentation (or its nearest parent's). */
  function findYamlLine(lines, path) {
    const indentOf = (line) => line.length - line.trimStart().length;
    const isContent = (line) => line.trim() !== "" && !line.trimStart().startsWith("#");
    // the block of a key at indentation `indent` ends at a less indented line, or an equally indented one
    // that is not a "- " item (YAML lets a list sit at its key's indentation)
    const blockEnd = (start, indent, itemsBelong) => {
      let end = start + 1;
      while (end < lines.length) {
        const line = lines[end];
        if (isContent(line)) {
          const depth = indentOf(line);
          if (depth < indent || (depth === indent && !(itemsBelong && /^\s*- /.test(line)))) break;
        }
        end += 1;
      }
      return end;
    };
    let from = 0;
    let to = lines.length;
    let found = -1;
    for (const key of path) {
      let hit = -1;
      let hitIndent = 0;
      if (typeof key === "number") {
        let count = -1;
        let itemIndent = null;
        for (let i = from; i < to && hit < 0; i += 1) {
          const match = /^(\s*)- /.exec(lines[i]);
          if (!match || !isContent(lines[i])) continue;
          if (itemIndent === null) itemIndent = match[1].length;
          if (match[1].length === itemIndent && (count += 1) === key) [hit, hitIndent] = [i, itemIndent];
        }
        if (hit < 0) break;
        [found, from, to] = [hit, hit, blockEnd(hit, hitIndent + 1, false)];
      } else {
        const escaped = String(key).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        const pattern = new RegExp(`^(\\s*)(- )?${escaped}\\s*:`);
        let best = Infinity;
        for (let i = from; i < to; i += 1) {
          const match = pattern.exec(lines[i]);
          const depth = match ? match[1].length + (match[2] ? 2 : 0) : Infinity;
          if (depth < best) [best, hit] = [depth, i];
        }
        if (hit < 0) break;
        [found, from, to] = [hit, hit + 1, blockEnd(hit, best, true)];
      }
    }
    return found;
  }

  /** Selects the line a problem is about: its field's, or for a YAML syntax error the line it names. */
  function revealField(textarea, path, message) {
    const lines = textarea.value.split("\n");
    const syntax = path.length === 1 && path[0] === "config_yaml" ? /line (\d+)/.exec(message) : null;
    const line = syntax ? Math.min(Number(syntax[1]), lines.length) - 1 : findYamlLine(lines, path);
    textarea.focus();
    if (line < 0) return;
    const start = lines.slice(0, line).reduce((sum, text) => sum + text.length + 1, 0);
    textarea.setSelectionRange(start, start + lines[line].length);
    const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 16;
    textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }

  /** Lists an error's problems ({status, detail, message}) in `container`; marks `textarea` invalid. */
  function show(container, textarea, error) {
    const problems = problemsOf(error);
    const title = document.createElement("p");
    title.textContent = PROBLEM_TITLES[error.status]
      ?? (problems.length === 1 ? "The config has a problem:"
        : `The config has ${problems.length} problems:`);
    const list = document.createElement("ul");
    for (const { path, message } of problems) {
      const item = document.createElement("li");
      if (path.length > 0) {
        const field = document.createElement("button");
        Object.assign(field, { type: "button", className: "link", title: "Show this field in the config" });
        field.append(document.createElement("code"));
        field.firstChild.textContent = path.join(".");
        field.addEventListener("click", () => revealField(textarea, path, message));
        item.append(field, `: ${message}`);
      } else {
        item.append(message);
      }
      list.append(item);
    }
    container.replaceChildren(title, list);
    container.hidden = false;
    textarea.setAttribute("aria-invalid", "true");
  }

  function clear(container, textarea) {
    container.hidden = true;
    container.replaceChildren();
    textarea.removeAttribute("aria-invalid");
  }

  return { show, clear, problemsOf, findYamlLine };
})();
