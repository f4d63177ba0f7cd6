-- Source tables of the pipeline, exactly as docs/contract.md section 1 (column order is the wire order).
DROP TABLE IF EXISTS pinterest_data;
CREATE TABLE pinterest_data (
  `index` INT NOT NULL PRIMARY KEY,
  unique_id VARCHAR(36) NOT NULL,
  title VARCHAR(512) NOT NULL,
  description TEXT NOT NULL,
  poster_name VARCHAR(255) NOT NULL,
  follower_count VARCHAR(32) NOT NULL,
  tag_list TEXT NOT NULL,
  is_image_or_video VARCHAR(64) NOT NULL,
  image_src VARCHAR(255) NOT NULL,
  downloaded INT NOT NULL,
  save_location VARCHAR(255) NOT NULL,
  category VARCHAR(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

DROP TABLE IF EXISTS geolocation_data;
CREATE TABLE geolocation_data (
  ind INT NOT NULL PRIMARY KEY,
  `timestamp` DATETIME NOT NULL,
  latitude DOUBLE NOT NULL,
  longitude DOUBLE NOT NULL,
  country VARCHAR(255) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

DROP TABLE IF EXISTS user_data;
CREATE TABLE user_data (
  ind INT NOT NULL PRIMARY KEY,
  first_name VARCHAR(255) NOT NULL,
  last_name VARCHAR(255) NOT NULL,
  age INT NOT NULL,
  date_joined DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
