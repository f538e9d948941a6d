// The page of app.py: images in (drop, paste, pick, camera, crop), top-5 characters out.
"use strict";

const $ = (selector) => document.querySelector(selector);
let maxImages = 32;
let maxRequestBytes = 20 * 1024 * 1024;

function showMessage(text) {
  $("#message").textContent = text;
  $("#message").hidden = !text;
}

async function loadHealth() {
  try {
    const health = await (await fetch("/api/health")).json();
    maxImages = health.max_images;
    maxRequestBytes = health.max_request_mb * 1024 * 1024;
    $("#model").textContent =
      `Model ${health.model} (${health.runtime}), ${health.classes} classes, ${health.image_size}x${health.image_size} input`;
  } catch (e) {
    $("#model").textContent = "The server does not answer.";
  }
}

// Each image becomes a card; all images of one batch go to the server in one request.
async function predict(files) {
  if (!files.length) return;
  showMessage("");
  for (const batch of batches(files)) {
    const cards = batch.map(makeCard);
    $("#results").prepend(...cards);  // the newest batch on top, in the order given
    const form = new FormData();
    batch.forEach((file) => form.append("image", file, file.name || "image.png"));
    let answer;
    try {
      const response = await fetch("/api/predict?top=5", { method: "POST", body: form });
      answer = await response.json();
    } catch (e) {
      answer = { error: `No answer from the server (${e.message})` };
    }
    const results = answer.results || batch.map(() => ({ error: answer.error }));
    results.forEach((result, i) => fillCard(cards[i], result));
    if (answer.error && !answer.results) showMessage(answer.error);
  }
}

// Requests of at most maxImages files and, where the files allow, under the server's size limit.
function batches(files) {
  const result = [[]];
  let bytes = 0;
  for (const file of files) {
    const last = result[result.length - 1];
    if (last.length && (last.length === maxImages || bytes + file.size > 0.95 * maxRequestBytes)) {
      result.push([]);
      bytes = 0;
    }
    result[result.length - 1].push(file);
    bytes += file.size;
  }
  return result;
}

function makeCard(file) {
  const card = $("#card").content.firstElementChild.cloneNode(true);
  const url = URL.createObjectURL(file);
  card.querySelector("img").src = url;
  card.querySelector("img").alt = file.name || "image";
  card.querySelector(".name").textContent = file.name || "image";
  card.querySelector(".crop").addEventListener("click", () => openCropper(url, file.name));
  return card;
}

function fillCard(card, result) {
  if (result.error) {
    card.classList.add("failed");
    card.querySelector(".error").textContent = result.error;
    card.querySelector(".error").hidden = false;
    card.querySelector(".crop").hidden = true;
    card.querySelector("img").hidden = true;
    return;
  }
  const list = card.querySelector(".top");
  for (const guess of result.top) {
    const item = document.createElement("li");
    const percent = (100 * guess.probability).toFixed(1);
    const shown = guess.probability > 0 && percent === "0.0" ? "<0.1%" : `${percent}%`;
    item.innerHTML = '<span class="char"></span><span class="bar"><span></span></span>' +
      '<span class="pct"></span><span class="class"></span>';
    item.querySelector(".char").textContent = guess.character;
    item.querySelector(".bar span").style.width = `${percent}%`;
    item.querySelector(".pct").textContent = shown;
    item.querySelector(".class").textContent = guess.class;
    list.append(item);
  }
}

// Drop, paste and pick.
const drop = $("#drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  predict([...event.dataTransfer.files]);
});
document.addEventListener("paste", (event) => {
  const files = [...event.clipboardData.items].filter((item) => item.kind === "file").map((item) => item.getAsFile());
  predict(files);
});
$("#files").addEventListener("change", (event) => {
  predict([...event.target.files]);
  event.target.value = "";
});

// The camera: a frame of the video becomes an image.
let stream = null;
$("#camera-start").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch (e) {
    showMessage(`No camera (${e.message})`);
    return;
  }
  $("#video").srcObject = stream;
  $("#camera").hidden = false;
});
function stopCamera() {
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  $("#camera").hidden = true;
}
$("#camera-stop").addEventListener("click", stopCamera);
$("#camera-shoot").addEventListener("click", () => {
  const video = $("#video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => openCropper(URL.createObjectURL(blob), "photo.png"), "image/png");
  stopCamera();
});

// The cropper: drag a box over a photo; the box is cut out at full resolution and predicted.
const cropCanvas = $("#crop-canvas");
const crop = { image: null, name: "", box: null, start: null };

function openCropper(url, name) {
  const image = new Image();
  image.onload = () => {
    crop.image = image;
    crop.name = name || "image";
    crop.box = null;
    cropCanvas.width = image.naturalWidth;
    cropCanvas.height = image.naturalHeight;
    drawCrop();
    $("#crop-predict").disabled = true;
    $("#cropper").hidden = false;
    $("#cropper").scrollIntoView();
  };
  image.src = url;
}

function drawCrop() {
  const context = cropCanvas.getContext("2d");
  context.drawImage(crop.image, 0, 0);
  if (!crop.box) return;
  const { x, y, w, h } = crop.box;
  context.fillStyle = "rgba(0, 0, 0, 0.45)";
  context.fillRect(0, 0, cropCanvas.width, y);
  context.fillRect(0, y + h, cropCanvas.width, cropCanvas.height - y - h);
  context.fillRect(0, y, x, h);
  context.fillRect(x + w, y, cropCanvas.width - x - w, h);
  context.strokeStyle = "#2563eb";
  context.lineWidth = Math.max(2, cropCanvas.width / 300);
  context.strokeRect(x, y, w, h);
}

function canvasPoint(event) {
  const rect = cropCanvas.getBoundingClientRect();
  const clamp = (value, max) => Math.min(Math.max(0, Math.round(value)), max);
  return {  // inside the image, wherever the pointer went
    x: clamp((event.clientX - rect.left) * cropCanvas.width / rect.width, cropCanvas.width),
    y: clamp((event.clientY - rect.top) * cropCanvas.height / rect.height, cropCanvas.height),
  };
}

cropCanvas.addEventListener("pointerdown", (event) => {
  crop.start = canvasPoint(event);
  cropCanvas.setPointerCapture(event.pointerId);
});
cropCanvas.addEventListener("pointermove", (event) => {
  if (!crop.start) return;
  const point = canvasPoint(event);
  crop.box = {
    x: Math.min(crop.start.x, point.x), y: Math.min(crop.start.y, point.y),
    w: Math.abs(point.x - crop.start.x), h: Math.abs(point.y - crop.start.y),
  };
  drawCrop();
});
cropCanvas.addEventListener("pointerup", () => {
  crop.start = null;
  $("#crop-predict").disabled = !(crop.box && crop.box.w > 2 && crop.box.h > 2);
});
$("#crop-cancel").addEventListener("click", () => { $("#cropper").hidden = true; });
$("#crop-predict").addEventListener("click", () => {
  const { x, y, w, h } = crop.box;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d").drawImage(crop.image, x, y, w, h, 0, 0, w, h);
  const name = `crop of ${crop.name}`;
  canvas.toBlob((blob) => predict([new File([blob], name, { type: "image/png" })]), "image/png");
  $("#cropper").hidden = true;
});

loadHealth();
