# Fit the graduate-admission logistic regression and save a trimmed model.
#
#   Rscript handler/model/train.R DATA.csv OUT.rds [UNTRIMMED.rds]
#
# DATA.csv needs the columns admit (0/1), gre, gpa and rank (1-4). The model is
# glm(admit ~ gre + gpa + rank, family = binomial) with rank a factor, so the
# coefficients are named (Intercept), gre, gpa, rank2, rank3, rank4 (the published
# UCLA output). The saved model still accepts rank as a plain number 1-4:
#
#   predict(model, data.frame(gre = 800, gpa = 4, rank = 1), type = "response")
#
# because its terms carry a "predvars" entry factor(rank, levels = 1:4), the same
# mechanism R uses for safe prediction with poly() or scale().
#
# OUT.rds keeps only what predict(model, newdata, type = "response") reads. It is
# written to a temporary file in OUT's directory and renamed, so OUT is never
# half-written. With a third argument the untrimmed fit is saved there too (tests
# compare the two). Sizes of both are printed to stderr.

required_columns <- c("admit", "gre", "gpa", "rank")
rank_levels <- c("1", "2", "3", "4")

fail <- function(...) {
  message("train.R: ", ...)
  quit(save = "no", status = 1)
}

usage <- function() {
  message("usage: Rscript train.R DATA.csv OUT.rds [UNTRIMMED.rds]")
  quit(save = "no", status = 2)
}

read_admissions <- function(path) {
  if (!file.exists(path)) fail(path, ": no such file")
  data <- tryCatch(
    utils::read.csv(path, stringsAsFactors = FALSE),
    error = function(e) fail(path, ": cannot read CSV: ", conditionMessage(e))
  )
  missing <- setdiff(required_columns, names(data))
  if (length(missing) > 0) {
    fail(path, ": missing column(s) ", paste(sQuote(missing, FALSE), collapse = ", "),
         "; expected columns ", paste(required_columns, collapse = ", "),
         ", found ", paste(names(data), collapse = ", "))
  }
  for (column in required_columns) {
    values <- data[[column]]
    if (!is.numeric(values) || anyNA(values)) {
      fail(path, ": column '", column, "' must be numeric with no missing values")
    }
  }
  if (!all(data$admit %in% c(0, 1))) fail(path, ": column 'admit' must be 0 or 1")
  if (!all(data$rank %in% 1:4)) fail(path, ": column 'rank' must be one of 1, 2, 3, 4")
  data$rank <- factor(data$rank, levels = rank_levels)
  data
}

fit_admission <- function(data) {
  model <- stats::glm(admit ~ gre + gpa + rank, family = stats::binomial, data = data)
  # Convert a numeric (or character) rank in newdata to the fitted factor at
  # prediction time; the term stays "rank", so coefficient names stay rank2..rank4.
  predvars <- attr(model$terms, "predvars")
  rank_at <- match("rank", vapply(as.list(predvars)[-1], deparse, "")) + 1
  predvars[[rank_at]] <- bquote(factor(rank, levels = .(rank_levels)))
  attr(model$terms, "predvars") <- predvars
  model
}

# Keep what predict.glm(type = "response") and predict.lm(newdata = ...) read:
# coefficients, rank, qr$pivot, terms, xlevels, contrasts, family, call, class.
trim_model <- function(model) {
  drop <- c("residuals", "fitted.values", "effects", "R", "linear.predictors",
            "weights", "prior.weights", "y", "model", "data", "offset")
  model[drop] <- NULL
  model$qr <- list(pivot = model$qr$pivot, rank = model$qr$rank, tol = model$qr$tol)
  # Formulas and terms capture the environment they were created in (here the
  # frame holding the whole data set); base is all that predvars needs.
  attr(model$terms, ".Environment") <- baseenv()
  environment(model$formula) <- baseenv()
  model
}

save_atomically <- function(object, path) {
  tmp <- tempfile(pattern = paste0(".", basename(path), "."), tmpdir = dirname(path),
                  fileext = ".tmp")
  on.exit(unlink(tmp), add = TRUE)
  saveRDS(object, tmp)
  if (!file.rename(tmp, path)) fail("cannot rename ", tmp, " to ", path)
  file.size(path)
}

main <- function(args) {
  if (!length(args) %in% c(2, 3)) usage()
  data_path <- args[[1]]
  out_path <- args[[2]]
  if (!dir.exists(dirname(out_path))) fail(dirname(out_path), ": no such directory")
  model <- fit_admission(read_admissions(data_path))
  untrimmed_path <- if (length(args) == 3) args[[3]] else tempfile(fileext = ".rds")
  untrimmed_size <- save_atomically(model, untrimmed_path)
  if (length(args) == 2) unlink(untrimmed_path)
  trimmed_size <- save_atomically(trim_model(model), out_path)
  message(sprintf("train.R: %s: untrimmed %d bytes, trimmed %d bytes",
                  out_path, untrimmed_size, trimmed_size))
  print(stats::coef(model), digits = 7)
}

main(commandArgs(trailingOnly = TRUE))
