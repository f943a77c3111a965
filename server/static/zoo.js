// The web catalog's only script: pickers that apply on change, and a copy button.
// Pages work without it (every picker form also has a submit button).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("select.autosubmit").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.dataset.copy).textContent;
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { button.textContent = "copied"; });
      }
    });
  });
});
