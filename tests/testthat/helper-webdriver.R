# A small W3C WebDriver client for chromedriver, over curl and jsonlite: enough to
# drive a Shiny app in headless Chromium. Everything stays on loopback.

# Starts chromedriver on a free loopback port; stopped when `envir` ends. Without
# `--allowed-ips` it listens on 127.0.0.1 and ::1 only (with it, on every interface).
local_chromedriver <- function(envir = parent.frame()) {
  proc <- processx::process$new(Sys.which("chromedriver"), "--port=0",
                                stdout = "|", stderr = "2>&1", cleanup = TRUE)
  withr::defer(if (proc$is_alive()) proc$kill(), envir = envir)
  seen <- wait_for_line(proc, "was started successfully on port", timeout = 30)
  port <- sub(".*started successfully on port ([0-9]+).*", "\\1", grep("started successfully", seen, value = TRUE))
  sprintf("http://127.0.0.1:%s", port[[1]])
}

# A headless Chromium session; closed when `envir` ends.
local_browser <- function(driver, envir = parent.frame()) {
  caps <- list(capabilities = list(alwaysMatch = list(
    browserName = "chrome",
    `goog:chromeOptions` = list(
      binary = unname(Sys.which("chromium")),
      args = list("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900")
    )
  )))
  value <- wd_call(driver, "POST", "/session", caps)
  session <- list(url = paste0(driver, "/session/", value$sessionId))
  withr::defer(try(wd_call(session$url, "DELETE", ""), silent = TRUE), envir = envir)
  session
}

wd_call <- function(base, method, path, body = NULL, timeout = 60) {
  handle <- curl::new_handle(customrequest = method, timeout = timeout)
  if (method == "POST") {
    json <- if (is.null(body)) "{}" else jsonlite::toJSON(body, auto_unbox = TRUE)
    curl::handle_setopt(handle, postfields = json)
    curl::handle_setheaders(handle, "Content-Type" = "application/json")
  }
  res <- curl::curl_fetch_memory(paste0(base, path), handle = handle)
  out <- jsonlite::fromJSON(rawToChar(res$content), simplifyVector = FALSE)
  if (res$status_code >= 400) {
    stop(sprintf("WebDriver %s %s: %s: %s", method, path, out$value$error, out$value$message), call. = FALSE)
  }
  out$value
}

wd_navigate <- function(session, url) wd_call(session$url, "POST", "/url", list(url = url))

# The element's id; errors when there is none (see wd_wait()).
wd_find <- function(session, css) {
  value <- wd_call(session$url, "POST", "/element", list(using = "css selector", value = css))
  value[["element-6066-11e4-a52e-4f735466cecf"]]
}

wd_count <- function(session, css) {
  length(wd_call(session$url, "POST", "/elements", list(using = "css selector", value = css)))
}

wd_click <- function(session, css) {
  wd_call(session$url, "POST", paste0("/element/", wd_find(session, css), "/click"))
}

wd_type <- function(session, css, text) {
  el <- wd_find(session, css)
  wd_call(session$url, "POST", paste0("/element/", el, "/clear"))
  wd_call(session$url, "POST", paste0("/element/", el, "/value"), list(text = text))
}

wd_text <- function(session, css) {
  wd_call(session$url, "GET", paste0("/element/", wd_find(session, css), "/text"))
}

wd_value <- function(session, css) {
  wd_call(session$url, "GET", paste0("/element/", wd_find(session, css), "/property/value"))
}

wd_screenshot <- function(session, file) {
  png <- jsonlite::base64_dec(wd_call(session$url, "GET", "/screenshot"))
  dir.create(dirname(file), recursive = TRUE, showWarnings = FALSE)
  writeBin(png, file)
  invisible(file)
}

# Polls `condition()` (errors count as "not yet": the page may still be rendering)
# until it is TRUE; fails with `what` and the last value seen after `timeout` seconds.
wd_wait <- function(condition, what, timeout = 30, last = function() NULL) {
  deadline <- Sys.time() + timeout
  while (Sys.time() < deadline) {
    if (isTRUE(tryCatch(condition(), error = function(e) FALSE))) return(invisible(TRUE))
    Sys.sleep(0.2)
  }
  seen <- tryCatch(last(), error = function(e) conditionMessage(e))
  stop(sprintf("Timed out after %d s waiting for %s. Last seen: %s", timeout, what,
               paste(seen, collapse = "\n")), call. = FALSE)
}

# Waits until the text of `css` matches `pattern` (fixed); returns the text.
wd_wait_text <- function(session, css, pattern, timeout = 30) {
  text <- NULL
  wd_wait(function() {
    text <<- wd_text(session, css)
    grepl(pattern, text, fixed = TRUE)
  }, sprintf("%s to show \"%s\"", css, pattern), timeout, last = function() text)
  text
}
