// Reference images: file picker or drag-and-drop, previewed, at most MAX_REFERENCES.

import { $, el } from "./dom.js";
import { clearErrors, showMessage } from "./errors.js";

export const MAX_REFERENCES = 14;
const TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
const refs = []; // {name, url (object URL for the preview), dataUri}

const slot = () => document.querySelector('[data-error-for~="referenceImages"]');

function readDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function render() {
  $("#reference-count").textContent = `${refs.length} / ${MAX_REFERENCES}`;
  $("#reference-list").replaceChildren(
    ...refs.map((ref, index) =>
      el(
        "li",
        {},
        el("img", { src: ref.url, alt: ref.name, title: ref.name }),
        el("button", { type: "button", className: "remove", "aria-label": `Remove ${ref.name}`, onclick: () => remove(index) }, "×"),
      ),
    ),
  );
}

function remove(index) {
  URL.revokeObjectURL(refs[index].url);
  refs.splice(index, 1);
  clearErrors(slot().parentElement);
  render();
}

/** Add files; refuses the ones past the limit or of another type, saying why. */
export async function addFiles(files) {
  const box = slot();
  box.textContent = "";
  const problems = [];
  for (const file of files) {
    if (!TYPES.includes(file.type)) {
      problems.push(`${file.name} is not a PNG, JPEG, WebP or GIF image.`);
      continue;
    }
    if (refs.length >= MAX_REFERENCES) {
      problems.push(`At most ${MAX_REFERENCES} reference images: ${file.name} was not added.`);
      continue;
    }
    refs.push({ name: file.name, url: URL.createObjectURL(file), dataUri: await readDataUri(file) });
  }
  render();
  if (problems.length) showMessage(box, problems.join(" "));
}

/** The images for a request (data URIs, one of the documented forms). */
export function referenceImages() {
  return refs.map((ref) => ref.dataUri);
}

export function initReferences() {
  const zone = $("#drop-zone");
  const input = $("#references");
  input.addEventListener("change", async () => {
    await addFiles([...input.files]);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    addFiles([...event.dataTransfer.files]);
  });
  render();
}
