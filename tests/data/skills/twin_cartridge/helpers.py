VALUE = "twin helper"
