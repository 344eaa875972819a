# Fit admission models the ways users write them, each saved untrimmed as OUT_DIR/<kind>.rds.
#
#   Rscript tests/handler/fit_models.R DATA.csv OUT_DIR [KIND ...]
#
# Every fit runs at the top level of a fresh R session, as at a prompt, so a model's
# terms point at the global environment (saved by reference, not by content), as the
# 2017 procedure's admission.rds does. Without KIND, every kind below is fitted.

library(splines)

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) {
  message("usage: Rscript fit_models.R DATA.csv OUT_DIR [KIND ...]")
  quit(save = "no", status = 2)
}
data <- read.csv(args[[1]])
out_dir <- args[[2]]

# The 2017 procedure, verbatim: rank a factor in the data, every column a predictor.
admission_2017 <- data
admission_2017$rank <- as.factor(admission_2017$rank)
no_rank_4 <- admission_2017[admission_2017$rank != "4", ]
no_rank_4$rank <- droplevels(no_rank_4$rank)
as_text <- transform(data, rank = as.character(rank))
as_ordered <- transform(data, rank = factor(rank, ordered = TRUE))
with_gender <- transform(admission_2017, gender = rep(c("f", "m"), length.out = nrow(data)))
scale_gre <- function(x) x / 100  # defined at the prompt, so not saved with the model

fits <- list(
  "2017" = quote(glm(admit ~ ., data = admission_2017, family = "binomial")),
  "factor_in_formula" = quote(glm(admit ~ gre + gpa + factor(rank), data = data, family = binomial)),
  "numeric_rank" = quote(glm(admit ~ gre + gpa + rank, data = data, family = binomial)),
  "reordered" = quote(glm(admit ~ rank + gpa + gre, data = admission_2017, family = binomial)),
  "probit" = quote(glm(admit ~ gre + gpa + rank, data = admission_2017,
                       family = binomial(link = "probit"))),
  "lm" = quote(lm(admit ~ gre + gpa + rank, data = admission_2017)),
  "no_intercept" = quote(glm(admit ~ 0 + gre + gpa + rank, data = admission_2017,
                             family = binomial)),
  "three_ranks" = quote(glm(admit ~ gre + gpa + rank, data = no_rank_4, family = binomial)),
  "character_rank" = quote(glm(admit ~ gre + gpa + rank, data = as_text, family = binomial)),
  "interaction" = quote(glm(admit ~ gre * gpa + rank, data = admission_2017, family = binomial)),
  "rank_by_gpa" = quote(glm(admit ~ gre + gpa * rank, data = admission_2017, family = binomial)),
  "spline" = quote(glm(admit ~ ns(gre, df = 3) + gpa + rank, data = admission_2017,
                       family = binomial)),
  "poly" = quote(glm(admit ~ gre + poly(gpa, 2) + rank, data = admission_2017, family = binomial)),
  "offset" = quote(glm(admit ~ gre + rank + offset(gpa / 2), data = admission_2017,
                       family = binomial)),
  "ordered_rank" = quote(glm(admit ~ gre + gpa + rank, data = as_ordered, family = binomial)),
  "extra_variable" = quote(glm(admit ~ gre + gpa + rank + gender, data = with_gender,
                               family = binomial)),
  "prompt_function" = quote(glm(admit ~ scale_gre(gre) + gpa + rank, data = admission_2017,
                                family = binomial)),
  "missing_package" = quote(glm(admit ~ splines::ns(gre, df = 3) + gpa + rank,
                                data = admission_2017, family = binomial))
)

kinds <- if (length(args) > 2) args[-(1:2)] else names(fits)
unknown <- setdiff(kinds, names(fits))
if (length(unknown)) stop("unknown kind(s): ", paste(unknown, collapse = ", "))
for (kind in kinds) {
  model <- eval(fits[[kind]])
  if (kind == "missing_package") {
    # As if fitted with a package this R does not have: the terms call nosuchpkg::ns.
    rename <- function(e) {
      if (is.call(e)) {
        if (identical(e[[1L]], quote(splines::ns))) e[[1L]] <- quote(nosuchpkg::ns)
        e[] <- lapply(e, rename)
      }
      e
    }
    attr(model$terms, "predvars") <- rename(attr(model$terms, "predvars"))
  }
  saveRDS(model, file.path(out_dir, paste0(kind, ".rds")))
}
