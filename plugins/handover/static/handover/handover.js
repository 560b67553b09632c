// Print buttons on key receipts, handover forms, schedules and audits (no inline scripts: the CSP allows files only).
document.addEventListener("click", function (event) {
  if (event.target.closest("[data-print]")) window.print();
});
