// The KV cache view's script (runs inside the webview; no Node, no VS Code API beyond
// acquireVsCodeApi). It draws the view model the extension posts (extension/src/cacheView/viewModel.ts);
// every text goes in through textContent, never as HTML.
(function () {
  const vscode = acquireVsCodeApi();
  const TEXT_COLOR = [78, 154, 241];
  const IMAGE_COLORS = [
    [245, 166, 35],
    [126, 211, 33],
    [189, 16, 224],
    [80, 227, 194],
    [233, 78, 119],
    [248, 231, 28],
  ];
  const KEPT_COLOR = [46, 204, 113];
  const MERGED_COLOR = [243, 156, 18];
  const root = document.getElementById('root');

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function colorOf(modality) {
    return modality < 0 ? TEXT_COLOR : IMAGE_COLORS[modality % IMAGE_COLORS.length];
  }

  function rgba(rgb, alpha) {
    return `rgba(${rgb[0]}, ${rgb[1]}, ${rgb[2]}, ${alpha})`;
  }

  function legend(model) {
    const box = el('div', 'legend');
    const item = (rgb, label) => {
      const entry = el('span', 'legend-item');
      const swatch = el('span', 'swatch');
      swatch.style.background = rgba(rgb, 1);
      entry.append(swatch, el('span', '', label));
      box.append(entry);
    };
    item(TEXT_COLOR, 'text');
    const images = new Set(model.columnModality.filter((m) => m >= 0));
    for (const m of [...images].sort((a, b) => a - b)) item(colorOf(m), `image ${m + 1}`);
    item([128, 128, 128], 'evicted (faint)');
    return box;
  }

  function layerStrip(model, layer, index) {
    const section = el('div', 'layer');
    section.append(el('div', 'layer-label', `Layer ${index}`));
    const columns = model.columnModality.length;
    const cell = Math.max(1, Math.min(14, Math.floor(960 / Math.max(1, columns))));
    const rowHeight = 8;
    const canvas = document.createElement('canvas');
    canvas.width = columns * cell;
    canvas.height = layer.heads.length * rowHeight;
    canvas.title = `layer ${index}: one row per KV head, one column per ${model.bucket} token position(s)`;
    const ctx = canvas.getContext('2d');
    layer.heads.forEach((kept, h) => {
      for (let c = 0; c < columns; c++) {
        ctx.fillStyle = rgba(colorOf(model.columnModality[c]), 0.12 + 0.88 * kept[c]);
        ctx.fillRect(c * cell, h * rowHeight, cell, rowHeight - 1);
      }
    });
    section.append(canvas);
    return section;
  }

  function heatMap(values, rows, cols, rgb, title) {
    const size = Math.max(4, Math.min(24, Math.floor(192 / Math.max(rows, cols))));
    const canvas = document.createElement('canvas');
    canvas.width = cols * size;
    canvas.height = rows * size;
    canvas.title = title;
    const ctx = canvas.getContext('2d');
    values.forEach((v, i) => {
      ctx.fillStyle = rgba(rgb, 0.08 + 0.92 * v);
      ctx.fillRect((i % cols) * size, Math.floor(i / cols) * size, size - 1, size - 1);
    });
    return canvas;
  }

  function table(headers, rows) {
    const t = el('table');
    const head = el('tr');
    for (const h of headers) head.append(el('th', '', h));
    t.append(head);
    for (const r of rows) {
      const tr = el('tr');
      for (const v of r) tr.append(el('td', '', v));
      t.append(tr);
    }
    return t;
  }

  function render(model) {
    root.replaceChildren();
    const header = el('div', 'header');
    header.append(el('h1', '', model.title));
    const refresh = el('button', '', 'Refresh');
    refresh.addEventListener('click', () => vscode.postMessage({ type: 'refresh' }));
    header.append(refresh);
    root.append(header);

    const figures = el('div', 'figures');
    for (const f of model.figures) {
      const card = el('div', 'figure');
      card.append(el('div', 'figure-value', f.value), el('div', 'figure-label', f.label));
      figures.append(card);
    }
    root.append(figures);

    root.append(el('h2', '', 'Slots kept, per layer and KV head'), legend(model));
    const layers = el('div', 'layers');
    model.layers.forEach((layer, i) => layers.append(layerStrip(model, layer, i)));
    root.append(layers);

    if (model.images.length > 0) {
      root.append(el('h2', '', 'Image patches: kept (green) and merged into a kept slot (orange), share of layers × heads'));
      const images = el('div', 'images');
      for (const image of model.images) {
        const card = el('div', 'image');
        card.append(el('div', 'image-label', image.label));
        const maps = el('div', 'maps');
        maps.append(
          heatMap(image.kept, image.rows, image.cols, KEPT_COLOR, 'kept'),
          heatMap(image.merged, image.rows, image.cols, MERGED_COLOR, 'merged'),
        );
        card.append(maps);
        images.append(card);
      }
      root.append(images);
    }

    root.append(el('h2', '', 'Turns'));
    root.append(
      table(
        ['turn', 'new tokens', 'tokens seen', 'KV kept / full', 'first token ms', 'prefill ms', 'compress ms', 'decode ms', 'images encoded / reused'],
        model.turns.map((t) => [t.turn, t.newTokens, t.tokensSeen, t.kept, t.firstTokenMs, t.prefillMs, t.compressMs, t.decodeMs, t.images]),
      ),
    );
  }

  function message(text) {
    root.replaceChildren(el('p', 'empty', text));
  }

  window.addEventListener('message', (event) => {
    const data = event.data;
    if (data && data.type === 'model') render(data.model);
    else if (data && data.type === 'empty') message(data.text);
  });
  vscode.postMessage({ type: 'ready' });
})();
