// Progressive enhancement: classify as soon as a photo is chosen, and block double submits.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload");
  const input = document.getElementById("image");
  const button = document.getElementById("submit");
  form.addEventListener("submit", () => {
    button.disabled = true;
    button.textContent = "Classifying\u2026";
  });
  input.addEventListener("change", () => {
    if (input.files.length && !button.disabled) form.requestSubmit();
  });
});
