// The console's only script besides htmx. Its Content-Security-Policy runs no inline handler, so every
// handler lives here, delegated from the document (it survives htmx swaps). The budget slider: an input
// with data-mirror="ID" writes its value into the element with that id as it moves.
document.addEventListener("input", (event) => {
  const source = event.target;
  if (!(source instanceof HTMLInputElement) || !source.dataset.mirror) return;
  const field = document.getElementById(source.dataset.mirror);
  if (field) field.value = source.value;
});

// A button or form with data-confirm="QUESTION" (revoke, end, retire, stop, reject, launch, complete,
// promote) asks first: cancelling submits nothing. Without JavaScript the action runs, as the server
// allows it anyway.
document.addEventListener("submit", (event) => {
  const question = event.submitter?.dataset.confirm || event.target.dataset?.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// htmx swaps a refusal (422, base.html's htmx-config) like an answer, but ignores other error statuses
// and lost connections: the page just stayed as it was. Say so where the answer would have gone.
function requestFailed(event, text) {
  const target = event.detail.target;
  if (!target) return;
  target.querySelector(":scope > .request-failed")?.remove();
  const note = document.createElement("p");
  note.className = "error request-failed";
  note.setAttribute("role", "alert");
  note.textContent = text;
  target.prepend(note);
}
// A refused form answers the API's status with its own fragment (409: a campaign past its draft; 503: a
// busy or unreachable database, nothing was saved, retry shortly): swap it like a 422, so its message
// shows. A whole page (the console's error page) is not a fragment of this one: it stays a failed request.
document.addEventListener("htmx:beforeSwap", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.status >= 400 && !/^\s*<!doctype/i.test(xhr.responseText)) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
document.addEventListener("htmx:responseError", (event) => requestFailed(event,
  `The server could not answer (HTTP ${event.detail.xhr.status}); try again, or reload the page.`));
document.addEventListener("htmx:sendError", (event) => requestFailed(event,
  "The server could not be reached; check the connection and try again."));

// A table wider than a narrow screen scrolls sideways in its own box (console.css); one without a link or
// button inside could then not be scrolled by keyboard. Such a table takes focus (arrow keys scroll it).
function scrollableTablesFocusable() {
  for (const table of document.querySelectorAll("main table")) {
    if (table.scrollWidth > table.clientWidth + 1) table.tabIndex = 0;
    else table.removeAttribute("tabindex");
  }
}
document.addEventListener("DOMContentLoaded", scrollableTablesFocusable);
window.addEventListener("resize", scrollableTablesFocusable);
document.addEventListener("htmx:afterSettle", scrollableTablesFocusable);
