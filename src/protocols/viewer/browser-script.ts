/**
 * The page's own script, run by the browser after OpenSeadragon's: a separate file rather than
 * inline, so that the page's Content-Security-Policy can allow scripts from this server only. It
 * reads what the server wrote into the viewer element and reports in the status line.
 */
export const BROWSER_SCRIPT = `'use strict';
(function () {
  var element = document.getElementById('viewer');
  var status = document.getElementById('status');
  var info = element.getAttribute('data-info');
  if (!info) return;
  var name = element.getAttribute('data-name');
  var viewer = OpenSeadragon({
    element: element,
    tileSources: info,
    prefixUrl: element.getAttribute('data-buttons'),
  });
  // For the browser's console (and the tests): the OpenSeadragon viewer of the page.
  window.iipsrvViewer = viewer;
  viewer.addHandler('open', function () {
    var size = viewer.world.getItemAt(0).source.dimensions;
    status.textContent = name + ': ' + size.x + ' x ' + size.y + ' px';
  });
  viewer.addHandler('open-failed', function (event) {
    status.textContent = name + ' could not be opened: ' + event.message;
  });
})();
`;
