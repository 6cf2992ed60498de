// The console's only script besides htmx. Its Content-Security-Policy runs no inline handler, so the
// budget slider's copy into the budget field lives here: an input with data-mirror="ID" writes its value
// into the element with that id as it moves. Delegated from the document, so it survives htmx swaps.
document.addEventListener("input", (event) => {
  const source = event.target;
  if (!(source instanceof HTMLInputElement) || !source.dataset.mirror) return;
  const field = document.getElementById(source.dataset.mirror);
  if (field) field.value = source.value;
});
